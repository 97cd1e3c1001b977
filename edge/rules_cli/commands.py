"""`storebox rules ...` commands (docs/rules.md): write, check, review, override, dry-run, built-in packs, firings.

Safe while the box runs: each write is one SQLite transaction of its own (it waits for the box's write lock), and
the box's rules runtime picks up what changed. Rule files are YAML or JSON. A refusal is one bilingual line on
stderr and exit code 2; what a command wrote is printed as JSON.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml

from edge.rules_cli import rules_app
from edge.sync_cli.packages import _transact  # the CLI's one write transaction per command

T = TypeVar("T")
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")]
ActorOption = Annotated[str, typer.Option("--actor", help="who does it (a user name; the audit trail keeps it)")]
RuleFile = Annotated[Path, typer.Argument(help="the rule, YAML or JSON", exists=True, dir_okay=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings(config: Path | None, data_dir: Path | None) -> Any:
    from edge.cli import _settings as load

    return load(config, data_dir=data_dir)


def _now() -> datetime:
    return datetime.now(UTC)


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


@contextmanager
def _refused() -> Iterator[None]:
    from edge.cli import _refused as refused

    with refused():
        yield


def _write(settings: Any, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """fn(conn, *args) in one write transaction of its own; a refusal rolls back and exits 2."""
    with _refused():
        result: T = _transact(settings)(functools.partial(fn, **kw), *args)
    return result


def _read(settings: Any, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    from edge.cli import _reading

    with _reading(settings) as conn, _refused():
        return fn(conn, *args, **kw)


def load_rule_file(path: Path) -> Any:
    """The rule (or rule pack) in a YAML or JSON file; exit 2 with the reason when it does not parse."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError, RecursionError) as exc:
        typer.echo(f"storebox: {path.name} 无法解析 / does not parse: {str(exc)[:300]}", err=True)
        raise typer.Exit(2) from None


def _reviewer(settings: Any, actor: str) -> None:
    """Approving and rejecting are a reviewer's acts: the actor must be an active user holding rules:review."""
    from edge.cli import _reading
    from edge.security.roles import has_permission
    from edge.security.users import get_user

    with _reading(settings) as conn:
        user = get_user(conn, actor)
    if user is None or not user.active or not has_permission(user.role, "rules:review"):
        typer.echo(
            f"storebox: {actor} 不是有 rules:review 权限的在用用户"
            f" / {actor} is not an active user holding rules:review",
            err=True,
        )
        raise typer.Exit(2)


# --- reading ------------------------------------------------------------------------------------------


@rules_app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help="draft | in_review | active | retired")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Rules with their state, version in force and origin."""
    from edge.rules.store import list_rules

    rows = _read(_settings(config, data_dir), list_rules, state=state, limit=1000)
    if as_json:
        for row in rows:
            _echo(row)
        return
    for row in rows:
        active = row["active_version"] or "-"
        typer.echo(
            f"{row['id']:<48} {row['state']:<9} v{active}/{row['latest_version']} {row['origin']:<36}"
            f" {'on' if row['enabled'] else 'off'}  {row['name']}"
        )


@rules_app.command()
def show(rule_id: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """One rule: every version, the review trail, the override and lineage (JSON)."""
    from edge.rules.store import get_rule

    _echo(_read(_settings(config, data_dir), get_rule, rule_id))


def facts_table() -> str:
    """The documented facts as a Markdown table (docs/rules.md holds the same table)."""
    from edge.rules.facts import catalogue

    cat = catalogue()
    lines = ["| fact | type | 中文 | English | what it is |", "| --- | --- | --- | --- | --- |"]
    for ns in cat.namespaces.values():
        for fact in ns.fields.values():
            doc = fact.doc.replace("|", "\\|")
            lines.append(f"| `{fact.name}` | {fact.type} | {fact.zh} | {fact.en} | {doc} |")
    lines += [
        "",
        "| trigger or signal | 中文 | English | provides (besides event, store, params) |",
        "| --- | --- | --- | --- |",
    ]
    for source in cat.triggers.values():
        lines.append(
            f"| `{source.name}` | {source.zh} | {source.en} | {', '.join(f'`{n}`' for n in source.namespaces) or '-'} |"
        )
    for source in cat.signals.values():
        lines.append(
            f"| `signal: {source.name}` | {source.zh} | {source.en} |"
            f" {', '.join(f'`{n}`' for n in source.namespaces)} |"
        )
    lines.append("| `signal: rule.<name>` | 规则信号 | a rule's signal | `signal` |")
    return "\n".join(lines) + "\n"


@rules_app.command()
def facts() -> None:
    """The facts a rule may read, with their Chinese and English names (a Markdown table)."""
    typer.echo(facts_table(), nl=False)


@rules_app.command()
def validate(
    file: RuleFile,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Check a rule (or a rule pack: a file with `rules:`) without saving it; exit 2 with the problems."""
    from edge.rules.governance import readiness_problems
    from edge.rules.packs import RulePackInvalid, parse_pack
    from edge.rules.store import problems_of

    document = load_rule_file(file)
    settings = _settings(config, data_dir)
    if isinstance(document, dict) and "rules" in document:
        try:
            content = parse_pack(document, file.name)
        except RulePackInvalid as error:
            for problem in error.detail.get("problems", []):
                typer.echo(f"storebox: {problem}", err=True)
            raise typer.Exit(2) from None
        _echo({"ok": True, "rules": content.rule_ids})
        return
    if settings.db_path.exists():
        problems = _read(settings, problems_of, document, tuple(settings.rule_teams))
    else:
        conn = sqlite3.connect(":memory:")
        try:
            from edge.db import migrate

            conn.row_factory = sqlite3.Row
            migrate(conn)
            problems = problems_of(conn, document, tuple(settings.rule_teams))
        finally:
            conn.close()
    if problems:
        for problem in problems:
            typer.echo(f"storebox: {problem['message']} / {problem['message_en']}", err=True)
        raise typer.Exit(2)
    missing = [en for _, _, en in readiness_problems(document)]
    _echo({"ok": True, "ready_for_review": not missing, "missing_for_review": missing})


# --- writing and reviewing ------------------------------------------------------------------------------


@rules_app.command()
def create(
    file: RuleFile, actor: ActorOption = "cli", config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Save a new rule as a draft (refused, naming the problem, when it would not run)."""
    from edge.rules.store import create_rule

    settings = _settings(config, data_dir)
    document = load_rule_file(file)
    _echo(_write(settings, create_rule, document, actor, _now(), tuple(settings.rule_teams)))


@rules_app.command()
def update(
    file: RuleFile, actor: ActorOption = "cli", config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Edit the rule the file names: its draft, or a new draft version beside the active one."""
    from edge.rules.store import update_rule

    settings = _settings(config, data_dir)
    document = load_rule_file(file)
    rule_id = document.get("id") if isinstance(document, dict) else None
    _echo(_write(settings, update_rule, str(rule_id), document, actor, _now(), tuple(settings.rule_teams)))


@rules_app.command()
def submit(
    rule_id: str,
    reviewer: Annotated[str, typer.Option("--reviewer", help="a user holding rules:review, not the author")],
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Send the newest draft to a reviewer (it needs an owner and its business impact)."""
    from edge.rules.governance import submit as submit_rule

    _echo(_write(_settings(config, data_dir), submit_rule, rule_id, reviewer, actor, _now()))


@rules_app.command()
def approve(
    rule_id: str,
    actor: Annotated[str, typer.Option("--actor", help="the reviewer: a user holding rules:review, not the author")],
    note: Annotated[str | None, typer.Option(help="a note kept with the approval")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Put the version under review in force."""
    from edge.rules.governance import approve as approve_rule

    settings = _settings(config, data_dir)
    _reviewer(settings, actor)
    _echo(_write(settings, approve_rule, rule_id, actor, _now(), note, tuple(settings.rule_teams)))


@rules_app.command()
def reject(
    rule_id: str,
    reason: Annotated[str, typer.Option("--reason", help="why (kept with the version)")],
    actor: Annotated[str, typer.Option("--actor", help="the reviewer: a user holding rules:review")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Send the version under review back to draft."""
    from edge.rules.governance import reject as reject_rule

    settings = _settings(config, data_dir)
    _reviewer(settings, actor)
    _echo(_write(settings, reject_rule, rule_id, reason, actor, _now()))


@rules_app.command()
def retire(
    rule_id: str,
    reason: Annotated[str | None, typer.Option(help="why")] = None,
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Stop a rule (its active and pending versions are retired)."""
    from edge.rules.governance import retire as retire_rule

    _echo(_write(_settings(config, data_dir), retire_rule, rule_id, actor, _now(), reason))


@rules_app.command("restore-parameters")
def restore_parameters(
    rule_id: str,
    version: Annotated[int | None, typer.Option(min=1, help="only this version's changes")] = None,
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Undo the planning-parameter changes the rule made (values changed since by someone else stay: `kept`)."""
    from edge.rules.actions import restore_rule_parameters

    _echo(_write(_settings(config, data_dir), restore_rule_parameters, rule_id, actor, _now(), version))


def parse_param(text: str) -> tuple[str, Any]:
    """`name=value`; the value is read as YAML (15, 0.5, true, 包装破损, [a, b]); `name=` drops the override."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        typer.echo(f"storebox: 参数应写成 名称=值 / a param is name=value: {text!r}", err=True)
        raise typer.Exit(2)
    if not raw.strip():
        return name.strip(), None
    try:
        return name.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return name.strip(), raw


@rules_app.command()
def override(
    rule_id: str,
    enable: Annotated[bool | None, typer.Option("--enable/--disable", help="switch the rule on or off here")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="name=value (repeat); name= drops one")] = None,
    clear: Annotated[bool, typer.Option(help="drop the override")] = False,
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """This store's override of a rule (kept across pack upgrades and rollbacks)."""
    from edge.rules.store import set_override

    settings = _settings(config, data_dir)
    params = dict(parse_param(p) for p in param) if param else None
    _echo(
        _write(
            settings,
            set_override,
            rule_id,
            actor,
            _now(),
            enabled=enable,
            params=params,
            clear=clear,
            teams=tuple(settings.rule_teams),
        )
    )


@rules_app.command("dry-run")
def dry_run(
    rule_id: str,
    days: Annotated[int, typer.Option(help="replay this many days back", min=1, max=90)] = 7,
    version: Annotated[int | None, typer.Option(help="the version (default: the newest)")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """What the rule would have done over the last days; writes nothing (JSON)."""
    from edge.rules.dryrun import dry_run as replay
    from edge.rules.engine import load_rule_version
    from edge.rules.signals import SignalPolicy
    from edge.rules.store import UnknownRule, rule_row

    settings = _settings(config, data_dir)

    def run(conn: sqlite3.Connection) -> Any:
        chosen = version or int(rule_row(conn, rule_id)["latest_version"])
        loaded = load_rule_version(conn, rule_id, chosen, tuple(settings.rule_teams))
        if loaded is None:
            raise UnknownRule(rule_id, chosen)
        return replay(
            conn,
            loaded,
            days=days,
            now=_now(),
            timezone=settings.timezone,
            store_id=settings.store_id,
            teams=tuple(settings.rule_teams),
            email_routes=dict(settings.rule_email_routes),
            policy=SignalPolicy.from_settings(settings),
        ).to_json()

    _echo(_read(settings, run))


# --- packs and what rules did -------------------------------------------------------------------------------


@rules_app.command("install-builtin")
def install_builtin(
    names: Annotated[list[str] | None, typer.Argument(help="pack names (default: every built-in pack)")] = None,
    actor: ActorOption = "system",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Install the rule packs shipped with the box (a pack whose version is already in force is left alone)."""
    from edge.rules.packs import install_builtin as install

    for result in _write(_settings(config, data_dir), install, actor, _now(), names or None):
        _echo(result)


@rules_app.command()
def packs(
    all_versions: Annotated[bool, typer.Option("--all", help="every version this box held")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Rule packs in force (signed HQ packs and built-in ones) with their rules (JSON lines)."""
    from edge.rules.packs import list_packs

    for row in _read(_settings(config, data_dir), list_packs, all_versions=all_versions):
        _echo(row)


@rules_app.command()
def firings(
    rule: Annotated[str | None, typer.Option(help="only this rule")] = None,
    state: Annotated[str | None, typer.Option(help="fired | done | partial | failed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """What rules did, newest first, with their actions (JSON lines)."""
    from edge.rules.store import list_firings

    for row in _read(_settings(config, data_dir), list_firings, rule_id=rule, state=state, limit=limit):
        _echo(row)
