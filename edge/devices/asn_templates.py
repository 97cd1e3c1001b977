"""Supplier connector templates (供应商对接模板): a YAML mapping file turns a supplier's own CSV or JSON layout
into ASNs, so that a new supplier layout is a new file, not new code.

A template names the layout (CSV with its encoding, delimiter and header row, or JSON with the paths of the
ASNs and their lines), where each ASN field comes from (a column by header name or position, a JSON path, a
constant), unit conversions, date formats (strptime formats and Excel serial days) and defaults. Templates
are validated against `data/asn_templates/schema.json` and then for meaning; every refusal names the file
and line. `convert` reads a supplier's file through a template and returns the ASNs with, for each line,
where in the file it came from; every problem is collected with its place and reported at once.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from edge.devices.asn import MAX_ASN_LINES, MAX_PRICE_FEN, MAX_QTY, AsnLine
from edge.devices.yaml_source import compose, key_problems, line_at
from edge.ledger.errors import DomainError

TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_TEMPLATE_BYTES = 64 * 1024
MAX_IMPORT_BYTES = 1024 * 1024  # the API's body limit; an ASN file is far smaller
MAX_ASNS_PER_IMPORT = 100
MAX_PROBLEMS = 100
EXCEL = "excel"  # a date format: Excel's serial day number (1900 date system)
TODAY = "today"  # a date default: the day of the import
_EXCEL_EPOCH = date(1899, 12, 30)  # serial 1 is 1900-01-01; Excel counts a 29 Feb 1900 that never was
EXCEL_SCIENTIFIC = re.compile(r"^\d(\.\d+)?[eE]\+?\d+$")
_UNIT_NAME = re.compile(r"^\S{1,32}$")


class FieldKind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    MONEY = "money"


# Target fields of a template: (kind, required). `asn.po` is the PO's document id or number (doc_no).
HEADER_FIELDS: dict[str, tuple[FieldKind, bool]] = {
    "id": (FieldKind.TEXT, True),
    "po": (FieldKind.TEXT, True),
    "ship_date": (FieldKind.DATE, True),
    "note": (FieldKind.TEXT, False),
}
LINE_FIELDS: dict[str, tuple[FieldKind, bool]] = {
    "item": (FieldKind.TEXT, True),
    "qty": (FieldKind.NUMBER, True),
    "unit": (FieldKind.TEXT, False),
    "lot": (FieldKind.TEXT, False),
    "expiry": (FieldKind.DATE, False),
    "price": (FieldKind.MONEY, False),
}

# --- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateIssue:
    """One reason a template file is refused, at its file and line."""

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line else f"{self.file}: {self.reason}"


class AsnTemplateInvalid(DomainError):
    """A template file that does not load; every issue with file, line and reason."""

    code = "invalid_asn_template"
    status = 422

    def __init__(self, issues: Sequence[TemplateIssue]) -> None:
        self.issues = tuple(issues)
        first = str(self.issues[0]) if self.issues else "?"
        more = f" (+{len(self.issues) - 1})" if len(self.issues) > 1 else ""
        super().__init__(
            f"对接模板无效: {first}{more}",
            f"invalid connector template: {first}{more}",
            issues=[{"file": i.file, "line": i.line, "reason": i.reason} for i in self.issues],
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.issues,))


class UnknownAsnTemplate(DomainError):
    code = "unknown_asn_template"
    status = 404

    def __init__(self, name: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) or "-"
        super().__init__(
            f"没有名为 {name!r} 的对接模板 (可用: {listed})",
            f"no connector template named {name!r} (available: {listed})",
            template=name,
            available=list(known),
        )


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """One problem of a supplier's file: where it is (CSV line or JSON path), the ASN field, and why."""

    where: str  # "line 7" of a CSV file, or a JSON path such as "$.shipments[0].items[3]"
    field: str | None  # the ASN field, e.g. "lines.qty" or "asn.po"
    code: str
    message: str
    message_en: str
    line: int | None = None  # physical line of a CSV file
    asn_id: str | None = None
    asn_line: int | None = None  # line number within the ASN, as record_asn counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "field": self.field,
            "code": self.code,
            "message": self.message,
            "message_en": self.message_en,
            "line": self.line,
            "asn_id": self.asn_id,
            "asn_line": self.asn_line,
        }


class AsnImportRejected(DomainError):
    """A supplier file refused: every problem with its place in the file, nothing recorded."""

    code = "asn_import_rejected"
    status = 422

    def __init__(self, template: str, problems: Sequence[ImportProblem], truncated: bool = False) -> None:
        self.template = template
        self.problems = tuple(problems)
        self.truncated = truncated
        first = self.problems[0] if self.problems else None
        more = len(self.problems) - 1
        zh = f"{first.where}: {first.message}" if first else "文件无效"
        en = f"{first.where}: {first.message_en}" if first else "invalid file"
        super().__init__(
            f"发货通知文件被拒绝 (模板 {template}): {zh}" + (f" (另有 {more} 个问题)" if more > 0 else ""),
            f"ASN file refused (template {template}): {en}" + (f" (and {more} more problems)" if more > 0 else ""),
            template=template,
            problems=[p.to_dict() for p in self.problems],
            truncated=truncated,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.template, self.problems, self.truncated))


# --- JSON paths (a small subset: $ . ['name'] [n] [*]) -------------------------------------------

Segment = tuple[str, str | int]  # ("key", name) | ("index", n) | ("all", "*")
_PATH_TOKEN = re.compile(
    r"""\.(?P<key>[^.\[\]'"\s]+)|\[(?P<index>\d{1,6})\]|\[(?P<all>\*)\]|\['(?P<sq>[^']*)'\]|\["(?P<dq>[^"]*)"\]"""
)
_PLAIN_KEY = re.compile(r"^[^.\[\]'\"\s]+$")


def parse_path(text: str) -> tuple[Segment, ...]:
    """`$.shipments[*].items[0]['批 号']` -> segments; ValueError with the place it cannot read."""
    if not text.startswith("$"):
        raise ValueError(f"a path starts with $: {text!r}")
    segments: list[Segment] = []
    pos = 1
    while pos < len(text):
        match = _PATH_TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"cannot read path {text!r} at character {pos + 1}")
        if match.group("index") is not None:
            segments.append(("index", int(match.group("index"))))
        elif match.group("all") is not None:
            segments.append(("all", "*"))
        else:
            key = next(g for g in (match.group("key"), match.group("sq"), match.group("dq")) if g is not None)
            segments.append(("key", key))
        pos = match.end()
    return tuple(segments)


def _step(where: str, segment: Segment) -> str:
    kind, value = segment
    if kind == "index":
        return f"{where}[{value}]"
    if kind == "all":
        return f"{where}[*]"
    return f"{where}.{value}" if _PLAIN_KEY.match(str(value)) else f"{where}['{value}']"


def _lookup(obj: Any, path: Sequence[Segment]) -> tuple[bool, Any]:
    """(found, value) of a path without [*]."""
    for kind, value in path:
        is_key = kind == "key" and isinstance(obj, dict) and value in obj
        is_index = kind == "index" and isinstance(obj, list) and isinstance(value, int) and value < len(obj)
        if not (is_key or is_index):
            return False, None
        obj = obj[value]
    return True, obj


def _each(obj: Any, path: Sequence[Segment], where: str) -> Iterator[tuple[str, Any]]:
    """Every value a path with at most one trailing [*] selects, with its place; raises _Bad when it cannot."""
    if path and path[-1][0] == "all":
        found, value = _lookup(obj, path[:-1])
        base = where
        for segment in path[:-1]:
            base = _step(base, segment)
        if not found:
            raise _Bad(f"{base} 不存在", f"{base} is missing")
        if not isinstance(value, list):
            raise _Bad(f"{base} 应为数组", f"{base} must be an array")
        for i, item in enumerate(value):
            yield f"{base}[{i}]", item
        return
    found, value = _lookup(obj, path)
    place = where
    for segment in path:
        place = _step(place, segment)
    if not found:
        raise _Bad(f"{place} 不存在", f"{place} is missing")
    yield place, value


# --- the template ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Where one ASN field comes from and how its text becomes a value."""

    target: str
    kind: FieldKind
    required: bool
    columns: tuple[str, ...] = ()
    index: int | None = None  # 1-based column position
    path: tuple[Segment, ...] | None = None
    path_text: str | None = None
    value: str | None = None  # a constant
    default: str | None = None
    mapping: tuple[tuple[str, str], ...] = ()
    formats: tuple[str, ...] = ("%Y-%m-%d",)
    money_in: str = "yuan"

    @property
    def source(self) -> str:
        if self.columns:
            return " / ".join(self.columns)
        if self.index is not None:
            return f"#{self.index}"
        if self.path_text is not None:
            return self.path_text
        return "value"


@dataclass(frozen=True, slots=True)
class UnitRule:
    """A supplier's unit word: the store units it may be, in order (the first one the item has is taken; none:
    the unit the item code implies), and a factor into the one unit named, if any.

    A factor needs exactly one named unit: the box then applies that unit's own factor on top (1 for `g`), so
    a conversion is made once. With no unit named the item code's unit could already be the larger one (a
    `kg` barcode), and the factor would be applied twice.
    """

    units: tuple[str, ...]
    factor: int = 1


@dataclass(frozen=True, slots=True)
class UnitChoice:
    """How the unit of a line read from a file is settled against its item (`edge.devices.supplier_asns`): the
    supplier's word as written and the store units it may be, in order; none: the unit the item code implies."""

    word: str | None
    units: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AsnTemplate:
    """A loaded, valid template."""

    name: str
    description: str
    format: str  # csv | json
    file: str
    header: tuple[FieldRule, ...]
    lines: tuple[FieldRule, ...]
    units: tuple[tuple[str, UnitRule], ...] | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    header_row: int = 1
    skip_prefixes: tuple[str, ...] = ()
    asns_path: tuple[Segment, ...] = ()
    lines_path: tuple[Segment, ...] = (("key", "lines"), ("all", "*"))
    text: str = field(default="", repr=False)  # the YAML as written, for integrators

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "format": self.format,
            "encoding": self.encoding if self.format == "csv" else "utf-8",
            "delimiter": self.delimiter if self.format == "csv" else None,
            "fields": {
                **{f"asn.{r.target}": r.source for r in self.header},
                **{f"lines.{r.target}": r.source for r in self.lines},
            },
        }


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    text = resources.files("edge.devices").joinpath("data", "asn_templates", "schema.json").read_text("utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator in ("oneOf", "anyOf") and error.context:
        deepest = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        if deepest.validator != "type" or len(deepest.absolute_path) > len(error.absolute_path):
            return _schema_message(deepest)
        return "must be a header name / JSON path (text) or a mapping with column, index, path or value"
    where = ".".join(str(p) for p in error.absolute_path)
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
        extra = [str(k) for k in error.instance if k not in allowed]
        message = f"unknown key {', '.join(map(repr, extra))} (allowed: {', '.join(allowed)})"
    return f"{where}: {message}" if where else message


def _schema_issues(data: Any, root: yaml.Node, file: str) -> list[TemplateIssue]:
    issues = []
    for error in sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        key = None
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
            key = next((str(k) for k in error.instance if k not in allowed), None)
        path = list(error.absolute_path)
        issues.append(TemplateIssue(file, line_at(root, [*path, key] if key else path), _schema_message(error)))
    return issues


class _Issues:
    """Collects semantic issues of one template file with their lines."""

    def __init__(self, root: yaml.Node, file: str) -> None:
        self.root = root
        self.file = file
        self.found: list[TemplateIssue] = []

    def add(self, path: Sequence[Any], reason: str) -> None:
        self.found.append(TemplateIssue(self.file, line_at(self.root, path), reason))


def _check_date_format(fmt: str) -> bool:
    if fmt == EXCEL:
        return True
    if "%" not in fmt:
        return False
    try:
        sample = datetime(2024, 12, 31).strftime(fmt)
        datetime.strptime(sample, fmt)
    except ValueError:
        return False
    return True


def _constant(value: Any) -> str | None:
    return None if value is None else str(value)


def _rule(
    target: str, spec: Any, kind: FieldKind, required: bool, fmt: str, where: list[Any], issues: _Issues
) -> FieldRule:
    if isinstance(spec, str):
        spec = {"path": spec} if fmt == "json" else {"column": spec}
    sources = [k for k in ("column", "index", "path", "value") if k in spec]
    if len(sources) != 1:
        issues.add(
            where, f"{target}: give exactly one of column, index, path, value (has {', '.join(sources) or 'none'})"
        )
        return FieldRule(target, kind, required)
    source = sources[0]
    if fmt == "json" and source in ("column", "index"):
        issues.add(where, f"{target}: a JSON template takes path or value, not {source}")
    if fmt == "csv" and source == "path":
        issues.add(where, f"{target}: a CSV template takes column, index or value, not path")
    if "value" in spec and "default" in spec:
        issues.add(where, f"{target}: a constant value needs no default")
    path: tuple[Segment, ...] | None = None
    if source == "path":
        try:
            path = parse_path(spec["path"])
        except ValueError as exc:
            issues.add([*where, "path"], f"{target}: {exc}")
        if path and any(kind_ == "all" for kind_, _ in path):
            issues.add([*where, "path"], f"{target}: a field path selects one value, no [*]")
    formats: tuple[str, ...] = tuple(spec.get("formats", ("%Y-%m-%d",)))
    for i, date_format in enumerate(formats):
        if not _check_date_format(date_format):
            issues.add([*where, "formats", i], f"{target}: {date_format!r} is not a strptime date format nor 'excel'")
    default = _constant(spec.get("default"))
    if default == TODAY and kind is not FieldKind.DATE:
        issues.add([*where, "default"], f"{target}: default 'today' is for dates only")
    columns = spec.get("column", ())
    return FieldRule(
        target=target,
        kind=kind,
        required=required,
        columns=tuple(_normal(c) for c in ([columns] if isinstance(columns, str) else columns)),
        index=spec.get("index"),
        path=path,
        path_text=spec.get("path"),
        value=_constant(spec.get("value")),
        default=default,
        mapping=tuple((str(k), str(v)) for k, v in spec.get("map", {}).items()),
        formats=formats,
        money_in=spec.get("in", "yuan"),
    )


def load_template_text(text: str, file: str, name: str) -> AsnTemplate:
    """Parse and validate one template; AsnTemplateInvalid with every issue at its line."""
    if not TEMPLATE_NAME.match(name):
        raise AsnTemplateInvalid([TemplateIssue(file, None, "a template file is named [a-z0-9-].yaml (max 64)")])
    if len(text.encode("utf-8")) > MAX_TEMPLATE_BYTES:
        raise AsnTemplateInvalid([TemplateIssue(file, None, f"larger than {MAX_TEMPLATE_BYTES} bytes")])
    try:
        root, data = compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise AsnTemplateInvalid([TemplateIssue(file, line, f"not valid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise AsnTemplateInvalid([TemplateIssue(file, None, f"not valid YAML: {exc}")]) from None
    if root is None or not isinstance(data, dict):
        raise AsnTemplateInvalid([TemplateIssue(file, 1, "a template is a YAML mapping (description, format, ...)")])
    found = [TemplateIssue(file, line, why) for line, why in key_problems(root)] or _schema_issues(data, root, file)
    if found:
        raise AsnTemplateInvalid(found)
    issues = _Issues(root, file)
    fmt = str(data["format"])
    if fmt == "csv" and "json" in data:
        issues.add(["json"], "a CSV template has no json block")
    if fmt == "json" and "csv" in data:
        issues.add(["csv"], "a JSON template has no csv block")
    csv_spec: dict[str, Any] = data.get("csv", {})
    json_spec: dict[str, Any] = data.get("json", {})
    header = tuple(
        _rule(name_, data["asn"][name_], kind, required, fmt, ["asn", name_], issues)
        for name_, (kind, required) in HEADER_FIELDS.items()
        if name_ in data["asn"]
    )
    lines = tuple(
        _rule(name_, data["lines"][name_], kind, required, fmt, ["lines", name_], issues)
        for name_, (kind, required) in LINE_FIELDS.items()
        if name_ in data["lines"]
    )
    header_row = int(csv_spec.get("header_row", 1))
    if fmt == "csv" and header_row == 0:
        for group, rules in (("asn", header), ("lines", lines)):
            for rule in rules:
                if rule.columns:
                    issues.add([group, rule.target], f"{rule.target}: header_row 0 means no header: use index")
    asns_path: tuple[Segment, ...] = ()
    lines_path: tuple[Segment, ...] = (("key", "lines"), ("all", "*"))
    for key in ("asns", "lines"):
        if key not in json_spec:
            continue
        try:
            parsed = parse_path(json_spec[key])
        except ValueError as exc:
            issues.add(["json", key], str(exc))
            continue
        wildcards = [i for i, (kind_, _) in enumerate(parsed) if kind_ == "all"]
        if wildcards and wildcards != [len(parsed) - 1]:
            issues.add(["json", key], f"{key}: only one [*], at the end of the path")
        elif key == "lines" and not wildcards:
            issues.add(["json", key], "lines: the path of the lines array ends with [*]")
        if key == "asns":
            asns_path = parsed
        else:
            lines_path = parsed
    units = None
    if "units" in data:
        units = []
        for unit_name, rule in data["units"].items():
            target = rule.get("unit")
            targets = tuple([target] if isinstance(target, str) else target or ())
            for name_ in targets:
                if not _UNIT_NAME.match(name_):
                    issues.add(["units", unit_name, "unit"], f"unit {name_!r}: no spaces, 1..32 characters")
            factor = int(rule.get("factor", 1))
            if factor != 1 and len(targets) != 1:
                issues.add(
                    ["units", unit_name, "factor"],
                    f"{unit_name}: a factor converts into one named unit, e.g. {{unit: g, factor: 1000}}"
                    + (
                        ": with unit null the code's unit may be the larger one and the factor would apply twice"
                        if not targets
                        else ", not a list"
                    ),
                )
            units.append((_normal(unit_name), UnitRule(tuple(_normal(t) for t in targets), factor)))
    if issues.found:
        raise AsnTemplateInvalid(issues.found)
    return AsnTemplate(
        name=name,
        description=str(data["description"]),
        format=fmt,
        file=file,
        header=header,
        lines=lines,
        units=tuple(units) if units is not None else None,
        encoding=str(csv_spec.get("encoding", "utf-8")),
        delimiter=str(csv_spec.get("delimiter", ",")),
        header_row=header_row,
        skip_prefixes=tuple(_normal(p) for p in csv_spec.get("skip_rows_starting_with", ())),
        asns_path=asns_path,
        lines_path=lines_path,
        text=text,
    )


def _read_source(source: Path | Traversable) -> str:
    data = source.read_bytes()
    if len(data) > MAX_TEMPLATE_BYTES:
        raise AsnTemplateInvalid([TemplateIssue(str(source), None, f"larger than {MAX_TEMPLATE_BYTES} bytes")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AsnTemplateInvalid([TemplateIssue(str(source), line, "not UTF-8 text")]) from None


def load_template(source: Path | Traversable) -> AsnTemplate:
    """Load one template file (its name is the file name without .yaml)."""
    name = source.name.removesuffix(".yaml")
    return load_template_text(_read_source(source), str(source), name)


def packaged_templates() -> Traversable:
    return resources.files("edge.devices").joinpath("data", "asn_templates")


def _template_files(extra_dir: Path | None) -> dict[str, Path | Traversable]:
    """Template files by name; one in the extra dir replaces the packaged one of the same name."""
    files: dict[str, Path | Traversable] = {}
    for folder in (packaged_templates(), extra_dir):
        if folder is None or not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml") and entry.is_file():
                files[entry.name.removesuffix(".yaml")] = entry
    return dict(sorted(files.items()))


def find_template(name: str, extra_dir: Path | None = None) -> AsnTemplate:
    """The template `name` from the extra dir or the package; UnknownAsnTemplate / AsnTemplateInvalid."""
    files = _template_files(extra_dir)
    if not TEMPLATE_NAME.match(name) or name not in files:
        raise UnknownAsnTemplate(name[:64], sorted(files))
    return load_template(files[name])


def list_templates(extra_dir: Path | None = None) -> tuple[list[AsnTemplate], list[TemplateIssue]]:
    """Every template that loads, and the issues of those that do not."""
    loaded: list[AsnTemplate] = []
    issues: list[TemplateIssue] = []
    for source in _template_files(extra_dir).values():
        try:
            loaded.append(load_template(source))
        except AsnTemplateInvalid as err:
            issues.extend(err.issues)
    return loaded, issues


def check_template_paths(paths: Sequence[Path]) -> tuple[int, list[TemplateIssue]]:
    """Validate template files or folders of them: (templates checked, issues)."""
    checked = 0
    issues: list[TemplateIssue] = []
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            checked += 1
            try:
                load_template(file)
            except AsnTemplateInvalid as err:
                issues.extend(err.issues)
            except OSError as exc:
                issues.append(TemplateIssue(str(file), None, f"cannot read: {exc.strerror or exc}"))
    return checked, issues


# --- converting a supplier's file --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourcedAsn:
    """An ASN read from a supplier's file, with the place of the ASN and of each of its lines.

    A line's `unit` is the first store unit its supplier unit may be; `line_units` says how to settle it
    against the item when the ASN is recorded (the store's units differ from store to store: 箱 or case).
    """

    asn_id: str
    po: str  # the PO's document id (digits) or its number (doc_no), as the file has it
    ship_date: date
    lines: tuple[AsnLine, ...]
    note: str | None = None
    where: str = ""
    line_sources: tuple[str, ...] = ()
    line_units: tuple[UnitChoice, ...] = ()


class _Bad(Exception):
    def __init__(self, message: str, message_en: str, code: str = "invalid_value") -> None:
        super().__init__(message_en)
        self.message = message
        self.message_en = message_en
        self.code = code


def _normal(text: str) -> str:
    """Text as compared: full-width forms folded (NFKC: `１２` -> `12`, `（箱）` -> `(箱)`), BOM and blanks trimmed."""
    return unicodedata.normalize("NFKC", text).replace("\ufeff", "").strip()


def _text(raw: Any, target: str) -> str:
    if isinstance(raw, (bool, dict, list)):
        shown = (
            ("布尔值", "a boolean")
            if isinstance(raw, bool)
            else ("对象", "an object")
            if isinstance(raw, dict)
            else ("数组", "an array")
        )
        raise _Bad(f"应为文本, 不能是{shown[0]}", f"must be text, not {shown[1]}")
    if isinstance(raw, Decimal):
        if raw != raw.to_integral_value():
            raise _Bad("应为文本或整数", "must be text or a whole number")
        raw = int(raw)
    text = _normal(str(raw))
    if target == "item" and EXCEL_SCIENTIFIC.match(text):
        raise _Bad(
            f"{text!r} 是 Excel 科学计数法, 条码已丢失: 请把该列设为文本格式后重新导出",
            f"{text!r} is Excel scientific notation, the barcode is lost: format the column as text and export again",
            "excel_scientific_notation",
        )
    if not text.isprintable():
        raise _Bad("含有控制字符", "contains control characters")
    return text


def _number(raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, (str, int, Decimal)):
        raise _Bad("应为数字", "must be a number")
    if isinstance(raw, str):
        text = _normal(raw).replace(" ", "")
        if "," in text:
            raise _Bad(f"数字 {text!r} 不能含千位分隔符", f"number {text!r} must not have thousands separators")
        try:
            raw = Decimal(text)
        except InvalidOperation:
            raise _Bad(f"{text[:40]!r} 不是数字", f"{text[:40]!r} is not a number") from None
    value = Decimal(raw)
    if not value.is_finite() or abs(value) > 10**12:
        raise _Bad("数字超出范围", "number out of range")
    return value


def _date(raw: Any, formats: Sequence[str], today: date) -> date:
    if raw == TODAY:
        return today
    if isinstance(raw, bool) or not isinstance(raw, (str, int, Decimal)):
        raise _Bad("应为日期", "must be a date")
    text = _normal(str(raw))
    for fmt in formats:
        if fmt == EXCEL:
            try:
                serial = Decimal(text)
            except InvalidOperation:
                continue
            if serial.is_finite() and 61 <= serial < 2958466:
                return _EXCEL_EPOCH + timedelta(days=int(serial))
            continue
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    shown = ", ".join(formats)
    raise _Bad(f"日期 {text[:40]!r} 不符合格式 {shown}", f"date {text[:40]!r} matches none of the formats {shown}")


def _money(raw: Any, unit: str) -> Decimal:
    """Fen as a Decimal (it may still be divided by a unit factor)."""
    value = _number(raw)
    fen = value * 100 if unit == "yuan" else value
    if fen != fen.to_integral_value():
        raise _Bad(
            f"金额 {value} {'元最多两位小数' if unit == 'yuan' else '分应为整数'}",
            f"amount {value}: {'yuan have at most 2 decimals' if unit == 'yuan' else 'fen are whole numbers'}",
        )
    if fen < 0:
        raise _Bad("金额不能为负", "amount must not be negative")
    return fen


class _Collector:
    def __init__(self, template: AsnTemplate) -> None:
        self.template = template
        self.problems: list[ImportProblem] = []
        self.truncated = False

    def add(self, problem: ImportProblem) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.truncated = True
            return
        self.problems.append(problem)

    def bad(self, where: str, line: int | None, fld: str | None, bad: _Bad, asn_id: str | None = None) -> None:
        self.add(ImportProblem(where, fld, bad.code, bad.message, bad.message_en, line, asn_id))

    def fail(self) -> AsnImportRejected:
        return AsnImportRejected(self.template.name, self.problems, self.truncated)


def _value(rule: FieldRule, raw: Any, today: date) -> Any:
    """The typed value of one field, or None when it is empty and has no default; _Bad when it is wrong."""
    if rule.value is not None:
        raw = rule.value
    if raw is None or (isinstance(raw, str) and not _normal(raw)):
        raw = rule.default
        if raw is None or not _normal(raw):
            if rule.required:
                raise _Bad(f"缺少 {rule.source}", f"{rule.source} is missing", "missing_value")
            return None
    if rule.mapping and isinstance(raw, (str, int, Decimal)) and not isinstance(raw, bool):
        raw = dict(rule.mapping).get(_normal(str(raw)), raw)
    if rule.kind is FieldKind.TEXT:
        return _text(raw, rule.target)
    if rule.kind is FieldKind.NUMBER:
        return _number(raw)
    if rule.kind is FieldKind.DATE:
        return _date(raw, rule.formats, today)
    return _money(raw, rule.money_in)


def _unit(template: AsnTemplate, text: str | None) -> UnitRule:
    """The rule of a supplier's unit word; a word the table does not list is taken as a store unit name."""
    table = dict(template.units or ())
    if text is None:
        return table.get("", UnitRule(()))
    rule = table.get(text) or next((r for name, r in template.units or () if name.casefold() == text.casefold()), None)
    return rule if rule is not None else UnitRule((text,))


def _asn_line(template: AsnTemplate, values: Mapping[str, Any]) -> tuple[AsnLine, UnitChoice]:
    unit = _unit(template, values.get("unit"))
    qty = values["qty"] * unit.factor
    if qty != qty.to_integral_value():
        shown = f"{values['qty']} {values.get('unit') or ''}".strip()
        raise _Bad(
            f"数量 {shown} 换算后不是整数 ({qty})",
            f"quantity {shown} is not a whole number once converted ({qty})",
            "invalid_qty",
        )
    if not 0 < qty <= MAX_QTY:
        raise _Bad(f"数量应在 1 到 {MAX_QTY} 之间", f"quantity must be 1..{MAX_QTY}", "invalid_qty")
    price = values.get("price")
    price_fen = None
    if price is not None:
        # The ASN price is informational (the PO's price books); per box unit it rounds once, half up.
        price_fen = int((price / unit.factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        if price_fen > MAX_PRICE_FEN:
            raise _Bad("单价过大", "price too large", "invalid_price")
    line = AsnLine(
        code=values["item"],
        qty=int(qty),
        unit=unit.units[0] if unit.units else None,
        lot=values.get("lot"),
        expiry=values.get("expiry"),
        price_fen=price_fen,
    )
    return line, UnitChoice(values.get("unit"), unit.units)


@dataclass
class _Draft:
    asn_id: str
    header: dict[str, Any]
    where: str
    first_line: int | None
    lines: list[AsnLine] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    units: list[UnitChoice] = field(default_factory=list)
    rows: int = 0  # line rows seen, valid or not


def _finish(drafts: Sequence[_Draft], collector: _Collector) -> list[SourcedAsn]:
    if len(drafts) > MAX_ASNS_PER_IMPORT:
        collector.add(
            ImportProblem(
                drafts[MAX_ASNS_PER_IMPORT].where,
                None,
                "too_many_asns",
                f"一个文件最多 {MAX_ASNS_PER_IMPORT} 张发货通知",
                f"a file holds at most {MAX_ASNS_PER_IMPORT} ASNs",
            )
        )
    for draft in drafts:
        if not draft.rows:
            collector.add(
                ImportProblem(
                    draft.where,
                    "lines",
                    "no_lines",
                    "发货通知没有明细行",
                    "the ASN has no lines",
                    draft.first_line,
                    draft.asn_id,
                )
            )
        elif len(draft.lines) > MAX_ASN_LINES:
            collector.add(
                ImportProblem(
                    draft.where,
                    "lines",
                    "too_many_lines",
                    f"发货通知最多 {MAX_ASN_LINES} 行",
                    f"an ASN has at most {MAX_ASN_LINES} lines",
                    draft.first_line,
                    draft.asn_id,
                )
            )
    if collector.problems or not drafts:
        if not drafts and not collector.problems:
            collector.add(ImportProblem("file", None, "empty_file", "文件中没有发货通知", "the file holds no ASN"))
        raise collector.fail()
    return [
        SourcedAsn(
            asn_id=d.asn_id,
            po=d.header["po"],
            ship_date=d.header["ship_date"],
            lines=tuple(d.lines),
            note=d.header.get("note"),
            where=d.where,
            line_sources=tuple(d.sources),
            line_units=tuple(d.units),
        )
        for d in drafts
    ]


def convert(template: AsnTemplate, data: bytes, *, today: date) -> list[SourcedAsn]:
    """The ASNs in a supplier's file; AsnImportRejected with every problem at its place, never anything half."""
    collector = _Collector(template)
    if len(data) > MAX_IMPORT_BYTES:
        collector.add(
            ImportProblem(
                "file",
                None,
                "file_too_large",
                f"文件超过 {MAX_IMPORT_BYTES} 字节",
                f"the file is larger than {MAX_IMPORT_BYTES} bytes",
            )
        )
        raise collector.fail()
    if template.format == "csv":
        return _finish(_from_csv(template, data, today, collector), collector)
    return _finish(_from_json(template, data, today, collector), collector)


# --- CSV -----------------------------------------------------------------------------------------

_ENCODING_NAMES = {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030", "utf-16": "UTF-16"}


def _decode(template: AsnTemplate, data: bytes) -> str:
    name = _ENCODING_NAMES[template.encoding]
    if template.encoding in ("gbk", "gb18030"):
        looks_utf8 = data.startswith(b"\xef\xbb\xbf")
        if not looks_utf8 and any(b > 0x7F for b in data[:65536]):
            try:
                data.decode("utf-8")
                looks_utf8 = True
            except UnicodeDecodeError:
                pass
        if looks_utf8:
            raise _Bad(
                f"文件是 UTF-8 编码, 模板要求 {name}: 请用 UTF-8 模板或以 {name} 导出",
                f"the file is UTF-8 but the template expects {name}: use a UTF-8 template or export as {name}",
                "wrong_encoding",
            )
    if template.encoding == "utf-8" and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode(template.encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint_zh = " (用友/金蝶等导出的文件常为 GBK: 请用 GBK 模板)" if template.encoding == "utf-8" else ""
        hint_en = " (files exported by Yonyou/Kingdee are often GBK: use a GBK template)" if hint_zh else ""
        raise _Bad(
            f"第 {line} 行不是有效的 {name} 文本{hint_zh}",
            f"line {line} is not valid {name} text{hint_en}",
            "wrong_encoding",
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise _Bad(
            f"第 {line} 行含有 NUL 字节: 不是文本文件?",
            f"line {line} contains a NUL byte: not a text file?",
            "not_text",
        )
    return text


def _records(template: AsnTemplate, text: str, collector: _Collector) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=template.delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    previous = 0
    limit = template.header_row + MAX_ASNS_PER_IMPORT * MAX_ASN_LINES
    try:
        for cells in reader:
            records.append((previous + 1, cells))
            previous = reader.line_num
            if len(records) > limit:
                collector.add(
                    ImportProblem(f"line {previous}", None, "too_many_rows", "行数过多", "too many rows", previous)
                )
                break
    except csv.Error as exc:
        line = reader.line_num or previous + 1
        collector.add(
            ImportProblem(
                f"line {line}",
                None,
                "invalid_csv",
                f"第 {line} 行 CSV 格式错误: {_csv_error_zh(str(exc), template.delimiter)}",
                f"line {line}: malformed CSV: {exc}",
                line,
            )
        )
    return records


def _csv_error_zh(reason: str, delimiter: str) -> str:
    """The Chinese of the csv module's reasons (strict mode)."""
    if "expected after" in reason:
        return f"引号结束后应紧跟分隔符 {delimiter!r}"
    if reason.startswith("unexpected end of data"):
        return "文件在引号内结束 (缺少结尾的引号?)"
    if reason.startswith("field larger than field limit"):
        return "单元格过长"
    if "new-line character" in reason:
        return "未加引号的单元格中有换行"
    return "无法读取该行"


def _column_indexes(
    template: AsnTemplate, header: tuple[int, list[str]] | None, collector: _Collector
) -> dict[str, int] | None:
    """Column position (0-based) of each rule that names a column or an index; None when a required one is
    missing (an optional column may be absent)."""
    found: dict[str, int] = {}
    names = [_normal(c) for c in header[1]] if header else []
    line = header[0] if header else 1
    ok = True
    for group, rules in (("asn", template.header), ("lines", template.lines)):
        for rule in rules:
            key = f"{group}.{rule.target}"
            if rule.index is not None:
                found[key] = rule.index - 1
                continue
            if not rule.columns:
                continue
            match = next((c for c in rule.columns if c in names), None)
            if match is None and not rule.required:
                continue  # an optional column the file does not have: the field is empty on every row
            if match is None:
                ok = False
                shown = ", ".join(n for n in names if n) or "-"
                collector.add(
                    ImportProblem(
                        f"line {line}",
                        key,
                        "missing_column",
                        f"表头中没有列 {' / '.join(rule.columns)} (表头: {shown})",
                        f"the header has no column {' / '.join(rule.columns)} (header: {shown})",
                        line,
                    )
                )
                continue
            positions = [i for i, n in enumerate(names) if n == match]
            if len(positions) > 1:
                ok = False
                collector.add(
                    ImportProblem(
                        f"line {line}",
                        key,
                        "duplicate_column",
                        f"列 {match} 出现多次 (第 {', '.join(str(p + 1) for p in positions)} 列)",
                        f"column {match} appears more than once (columns {', '.join(str(p + 1) for p in positions)})",
                        line,
                    )
                )
            found[key] = positions[0]
    return found if ok else None


def _from_csv(template: AsnTemplate, data: bytes, today: date, collector: _Collector) -> list[_Draft]:
    try:
        text = _decode(template, data)
    except _Bad as bad:
        collector.bad("file", None, None, bad)
        return []
    records = _records(template, text, collector)
    header = records[template.header_row - 1] if template.header_row and len(records) >= template.header_row else None
    if template.header_row and header is None:
        collector.add(
            ImportProblem(
                f"line {template.header_row}",
                None,
                "missing_header",
                "文件没有表头行",
                "the file has no header row",
                template.header_row,
            )
        )
        return []
    columns = _column_indexes(template, header, collector)
    if columns is None:
        return []
    width = len(header[1]) if header else None
    drafts: dict[str, _Draft] = {}
    current: _Draft | None = None
    for line_no, cells in records[template.header_row :]:
        values = [_normal(c) for c in cells]
        first = next((v for v in values if v), None)
        if first is None or any(first.startswith(p) for p in template.skip_prefixes):
            continue
        where = f"line {line_no}"
        if width is not None and len(values) > width and any(values[width:]):
            collector.add(
                ImportProblem(
                    where,
                    None,
                    "extra_cells",
                    f"第 {line_no} 行有 {len(values)} 列, 表头只有 {width} 列",
                    f"line {line_no} has {len(values)} cells, the header {width}",
                    line_no,
                )
            )
            continue

        def cell(group: str, rule: FieldRule, row: list[str] = cells) -> str | None:
            position = columns.get(f"{group}.{rule.target}")
            return row[position] if position is not None and position < len(row) else None

        current = _csv_row(template, today, collector, where, line_no, cell, drafts, current)
    return list(drafts.values())


def _csv_row(
    template: AsnTemplate,
    today: date,
    collector: _Collector,
    where: str,
    line_no: int,
    cell: Callable[[str, FieldRule], str | None],
    drafts: dict[str, _Draft],
    current: _Draft | None,
) -> _Draft | None:
    """One data row: its ASN header (a row without an ASN id continues the ASN above) and its line."""
    id_rule = next(r for r in template.header if r.target == "id")
    raw_id = cell("asn", id_rule)
    asn_id: str | None = None
    if id_rule.value is not None or id_rule.default is not None or (raw_id is not None and _normal(raw_id)):
        try:
            asn_id = _value(id_rule, raw_id, today)
        except _Bad as bad:
            collector.bad(where, line_no, "asn.id", bad)
            return current
    if asn_id is None and current is None:
        collector.add(
            ImportProblem(
                where,
                "asn.id",
                "missing_value",
                f"缺少发货通知号 ({id_rule.source})",
                f"no ASN id ({id_rule.source}) and no ASN above this line",
                line_no,
            )
        )
        return None
    draft = current if asn_id is None else drafts.get(asn_id)
    header: dict[str, Any] = {}
    for rule in template.header:
        if rule.target == "id":
            continue
        raw = cell("asn", rule)
        if draft is not None and (raw is None or not _normal(raw)) and rule.value is None:
            continue  # a header value given once for the ASN
        try:
            header[rule.target] = _value(rule, raw, today)
        except _Bad as bad:
            collector.bad(where, line_no, f"asn.{rule.target}", bad, asn_id)
    if draft is None:
        assert asn_id is not None
        draft = drafts[asn_id] = _Draft(asn_id, header, where, line_no)
    else:
        for key, value in header.items():
            if value is not None and draft.header.get(key) is None:
                draft.header[key] = value
            elif value is not None and draft.header[key] != value:
                collector.add(
                    ImportProblem(
                        where,
                        f"asn.{key}",
                        "inconsistent_header",
                        f"发货通知 {draft.asn_id} 的 {key} {value} 与 {draft.where} 的 {draft.header.get(key)} 不同",
                        f"ASN {draft.asn_id}: {key} {value} differs from {draft.header.get(key)} on {draft.where}",
                        line_no,
                        draft.asn_id,
                    )
                )
    draft.rows += 1
    values: dict[str, Any] = {}
    for rule in template.lines:
        try:
            values[rule.target] = _value(rule, cell("lines", rule), today)
        except _Bad as bad:
            collector.bad(where, line_no, f"lines.{rule.target}", bad, draft.asn_id)
            return draft
    try:
        line, choice = _asn_line(template, values)
    except _Bad as bad:
        collector.bad(where, line_no, "lines.qty", bad, draft.asn_id)
        return draft
    draft.lines.append(line)
    draft.units.append(choice)
    draft.sources.append(where)
    return draft


# --- JSON ----------------------------------------------------------------------------------------


# The Chinese of json's reasons (JSONDecodeError.msg); the English is json's own.
_JSON_ERRORS_ZH: dict[str, str] = {
    "Expecting value": "此处应为一个值",
    "Expecting property name enclosed in double quotes": "此处应为双引号括起的键名",
    "Expecting ',' delimiter": "此处应为逗号 ,",
    "Expecting ':' delimiter": "此处应为冒号 :",
    "Unterminated string starting at": "字符串缺少结尾的引号",
    "Invalid control character at": "字符串中有控制字符",
    "Invalid \\escape": "无效的转义序列",
    "Invalid \\uXXXX escape": "无效的 \\u 转义序列",
    "Extra data": "JSON 之后还有多余的内容",
}


def _reject_constant(name: str) -> Any:
    raise _Bad(f"{name} 在 JSON 中不是数字", f"{name} is not a number in JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Bad(f"键 {key[:64]!r} 重复", f"duplicate key {key[:64]!r}")
        result[key] = value
    return result


def _from_json(template: AsnTemplate, data: bytes, today: date, collector: _Collector) -> list[_Draft]:
    try:
        text = data.decode("utf-8-sig")
        doc = json.loads(
            text, parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys
        )
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        collector.add(
            ImportProblem(
                f"line {line}",
                None,
                "wrong_encoding",
                f"第 {line} 行不是有效的 UTF-8 文本",
                f"line {line} is not valid UTF-8 text",
                line,
            )
        )
        return []
    except json.JSONDecodeError as exc:
        collector.add(
            ImportProblem(
                f"line {exc.lineno}",
                None,
                "invalid_json",
                f"JSON 格式错误: {_JSON_ERRORS_ZH.get(exc.msg, '无法解析')} (第 {exc.lineno} 行第 {exc.colno} 列)",
                f"invalid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})",
                exc.lineno,
            )
        )
        return []
    except _Bad as bad:
        collector.add(ImportProblem("$", None, "invalid_json", f"JSON 无效: {bad.message}", f"invalid JSON: {bad}"))
        return []
    except RecursionError:
        collector.add(ImportProblem("$", None, "invalid_json", "JSON 嵌套过深", "invalid JSON: nested too deep"))
        return []
    except ValueError:  # e.g. an integer of more digits than Python converts
        collector.add(ImportProblem("$", None, "invalid_json", "JSON 中的数字过长", "invalid JSON: a number too long"))
        return []
    drafts: list[_Draft] = []
    try:
        asn_objects = list(_each(doc, template.asns_path, "$"))
    except _Bad as bad:
        collector.bad("$", None, None, bad)
        return []
    seen: dict[str, str] = {}
    for where, obj in asn_objects:
        if not isinstance(obj, dict):
            collector.add(ImportProblem(where, None, "invalid_value", "应为 JSON 对象", "must be a JSON object"))
            continue
        header: dict[str, Any] = {}
        failed = False
        for rule in template.header:
            found, raw = _lookup(obj, rule.path) if rule.path is not None else (False, None)
            try:
                header[rule.target] = _value(rule, raw if found else None, today)
            except _Bad as bad:
                failed = True
                collector.bad(_place(where, rule), None, f"asn.{rule.target}", bad)
        asn_id = header.get("id")
        if isinstance(asn_id, str) and asn_id in seen:
            collector.add(
                ImportProblem(
                    where,
                    "asn.id",
                    "duplicate_asn",
                    f"发货通知号 {asn_id} 重复 (另见 {seen[asn_id]})",
                    f"ASN id {asn_id} appears twice (also at {seen[asn_id]})",
                    None,
                    asn_id,
                )
            )
            continue
        if not failed and isinstance(asn_id, str):
            seen[asn_id] = where
        draft = _Draft(asn_id if isinstance(asn_id, str) else "", header, where, None)
        drafts.append(draft)
        try:
            line_objects = list(_each(obj, template.lines_path, where))
        except _Bad as bad:
            collector.bad(where, None, "lines", bad, asn_id)
            continue
        for line_where, line_obj in line_objects:
            _json_line(template, today, collector, draft, line_where, line_obj)
    return drafts


def _place(where: str, rule: FieldRule) -> str:
    for segment in rule.path or ():
        where = _step(where, segment)
    return where


def _json_line(template: AsnTemplate, today: date, collector: _Collector, draft: _Draft, where: str, obj: Any) -> None:
    draft.rows += 1
    if not isinstance(obj, dict):
        collector.add(
            ImportProblem(
                where, "lines", "invalid_value", "应为 JSON 对象", "must be a JSON object", None, draft.asn_id
            )
        )
        return
    values: dict[str, Any] = {}
    for rule in template.lines:
        found, raw = _lookup(obj, rule.path) if rule.path is not None else (False, None)
        try:
            values[rule.target] = _value(rule, raw if found else None, today)
        except _Bad as bad:
            collector.bad(_place(where, rule), None, f"lines.{rule.target}", bad, draft.asn_id)
            return
    try:
        line, choice = _asn_line(template, values)
    except _Bad as bad:
        collector.bad(where, None, "lines.qty", bad, draft.asn_id)
        return
    draft.lines.append(line)
    draft.units.append(choice)
    draft.sources.append(where)
