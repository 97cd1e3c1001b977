"""Low-code rules over HTTP (业务规则, docs/rules.md): write, review, dry-run, retire; firings, holds, tickets.

Writes go through the one writer; the domain is edge/rules (store.py, governance.py, packs.py, holds.py). A rule is
refused at save with the same bilingual errors as everywhere else (`rule_syntax_invalid`, `rule_fact_unknown`,
`rule_loop`, ...); `POST /rules/validate` answers the editor's live check with the same problems and never fails.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from edge.rules import drafts, governance, holds, packs, store
from edge.rules.catalogue import actions
from edge.rules.facts import catalogue
from edge.security.errors import PermissionDenied
from edge.security.roles import has_permission
from edge.security.users import User
from edge.web.deps import Deps, Reader, read, require
from edge.web.errors import error_responses

MAX_ID = 2**63 - 1
RULE_ID = r"^[a-z0-9][a-z0-9._-]{0,63}$"

router = APIRouter(prefix="/api/v1", tags=["rules"], responses=error_responses(401, 403, 500))

RuleId = Annotated[str, Path(pattern=RULE_ID, description="the rule's id")]
HoldId = Annotated[int, Path(ge=1, le=MAX_ID, description="the hold's id")]
TicketId = Annotated[int, Path(ge=1, le=MAX_ID, description="the rule ticket's id")]
DraftId = Annotated[int, Path(ge=1, le=MAX_ID, description="the rule draft's id")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]
WRITE_RESPONSES = error_responses(404, 409, 422, 503)
RuleDocument = Annotated[
    dict[str, Any],
    Body(
        description="the rule (docs/rules.md): id, name {zh, en}, trigger, when, params, then, owner, impact",
        examples=[
            {
                "id": "lead-time-growth",
                "name": {"zh": "供应商交期延长超过阈值", "en": "Supplier lead time grows past a threshold"},
                "trigger": {"kind": "signal", "name": "supplier.lead_time_changed"},
                "when": "lead_time.change_days > params.threshold_days",
                "params": {"threshold_days": 15},
                "then": [
                    {
                        "action": "notify",
                        "role": "category_manager",
                        "message": {"zh": "{supplier.name} 交期延长", "en": "{supplier.name}: lead time grew"},
                    }
                ],
                "owner": "purchasing-lead",
                "impact": {"what": "service level +0.02", "who": "category managers", "how_much": "a few suppliers"},
            }
        ],
    ),
]


# --- models -------------------------------------------------------------------------------------------


class ProblemOut(BaseModel):
    code: str
    message: str
    message_en: str
    detail: dict[str, Any]


class ValidateOut(BaseModel):
    ok: bool = Field(description="the rule would be accepted at save")
    problems: list[ProblemOut] = Field(description="why not: the same errors saving would answer")
    ready_for_review: bool = Field(description="it also names its owner and its business impact")
    missing_for_review: list[ProblemOut]


class RuleSummaryOut(BaseModel):
    id: str
    state: Literal["draft", "in_review", "active", "retired"]
    active_version: int | None = Field(description="the version in force (null while none is)")
    latest_version: int
    latest_state: str = Field(description="draft, in_review, active, superseded, retired or withdrawn")
    name: str
    name_en: str
    trigger_kind: str
    trigger_key: str = Field(description="doc type, device event, alert kind, cron or signal name")
    owner: str | None
    reviewer: str | None = Field(description="the reviewer named for the newest version")
    origin: str = Field(description="local, pack:<name>@<version> or builtin:<pack>@<version>")
    pack: str | None
    enabled: bool = Field(description="the rule's own `enabled`, or the store's override")
    created_by: str
    created_at: str
    updated_at: str


class VersionOut(BaseModel):
    version: int
    state: str
    sha256: str
    trigger_kind: str
    trigger_key: str
    name: str
    name_en: str
    owner: str | None
    origin: str
    author: str
    created_at: str
    updated_at: str
    reviewer: str | None
    submitted_by: str | None
    submitted_at: str | None
    approved_by: str | None
    approved_at: str | None
    rejected_by: str | None
    rejected_at: str | None
    reject_reason: str | None
    retired_by: str | None
    retired_at: str | None
    document: dict[str, Any]


class ReviewOut(BaseModel):
    id: int
    version: int
    action: str
    from_state: str | None
    to_state: str | None
    actor: str
    reviewer: str | None
    reason: str | None
    signature: str | None
    at: str


class OverrideOut(BaseModel):
    rule_id: str
    enabled: bool | None = Field(description="null: as the rule says")
    params: dict[str, Any]
    updated_by: str | None
    updated_at: str | None


class RuleOut(RuleSummaryOut):
    versions: list[VersionOut] = Field(description="newest first")
    reviews: list[ReviewOut] = Field(description="the governance trail, newest first")
    override: OverrideOut
    lineage: dict[str, Any] = Field(description="origin, pack in force, firings and the objects they acted on")


class SubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviewer: str = Field(min_length=1, max_length=64, description="a user holding rules:review, not the author")


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=1000)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


class RetireIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=1000)


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, description="switch the rule off (false) or on here; omit to keep")
    params: dict[str, Any] | None = Field(None, description="params the rule declares; a null value drops one")
    clear: bool = Field(False, description="drop the override altogether")


class DryRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(7, ge=1, le=90, description="replay the ledger events of the last `days` days")
    version: int | None = Field(None, ge=1, description="the version to try (default: the newest)")


class DryRunOut(BaseModel):
    rule_id: str
    version: int
    days: int
    since: str
    until: str
    replayable: bool = Field(description="false for triggers with no replayable history (bus, alert, rule signals)")
    note: str
    note_en: str
    events: int = Field(description="events replayed")
    firings: int = Field(description="times the condition held")
    failed: int = Field(description="firings whose evaluation failed")
    failed_actions: int = Field(0, description="actions the live run would fail (an e-mail to a team with no address)")
    truncated: bool
    actions: dict[str, int] = Field(description="how many times each action would have run")
    samples: list[dict[str, Any]] = Field(description="the first firings: facts and what each action would do")
    errors: list[str]


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=500)


class OptionalNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=500)


class DraftOut(BaseModel):
    id: int
    kind: Literal["purchase_order", "transfer_request", "presale", "markdown"]
    payload: dict[str, Any]
    subject: str | None
    rule_id: str
    version: int
    firing_id: int | None
    action_id: int | None
    state: Literal["open", "confirmed", "dismissed"]
    created_at: str
    decided_by: str | None
    decided_at: str | None
    document_id: int | None


class ResolutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: str = Field(min_length=1, max_length=1000)


class ActionRunOut(BaseModel):
    id: int
    action_index: int
    action: str
    spec: dict[str, Any]
    state: str
    result: dict[str, Any]
    object_kind: str | None
    object_id: str | None
    error: str | None
    at: str


class FiringOut(BaseModel):
    id: int
    rule_id: str
    version: int
    event_key: str
    trigger_kind: str
    subject: str | None
    facts: dict[str, Any]
    state: str
    error: str | None
    depth: int
    fired_at: str
    finished_at: str | None
    actions: list[ActionRunOut]


class HoldOut(BaseModel):
    id: int
    object_kind: Literal["purchase_order", "invoice", "document"]
    object_id: int
    rule_id: str
    version: int
    reason: str
    reason_en: str
    state: Literal["open", "released"]
    opened_at: str
    released_by: str | None
    released_at: str | None
    note: str | None


class TicketOut(BaseModel):
    id: int
    queue: str
    title: str
    title_en: str
    subject_kind: str | None
    subject: str | None
    rule_id: str
    version: int
    firing_id: int | None
    action_id: int | None
    detail: dict[str, Any]
    state: Literal["open", "closed"]
    opened_at: str
    closed_by: str | None
    closed_at: str | None
    resolution: str | None


class PackRuleOut(BaseModel):
    id: str
    state: str | None


class PackOut(BaseModel):
    name: str
    version: int
    source: Literal["package", "builtin"]
    origin: str
    description: str | None
    state: Literal["active", "draft"] = Field(description="the state its rules arrive in")
    in_force: bool
    signed: bool
    sha256: str
    install_id: int | None
    installed_by: str
    installed_at: str
    removed_at: str | None
    rules: list[PackRuleOut]


# --- the catalogue ------------------------------------------------------------------------------------


def _facts_catalogue() -> dict[str, Any]:
    cat = catalogue()
    return {
        "namespaces": [
            {
                "name": ns.name,
                "zh": ns.zh,
                "en": ns.en,
                "fields": [
                    {"name": f.name, "field": f.field, "type": f.type, "zh": f.zh, "en": f.en, "doc": f.doc}
                    for f in ns.fields.values()
                ],
            }
            for ns in cat.namespaces.values()
        ],
        "triggers": [
            {"kind": s.name, "zh": s.zh, "en": s.en, "namespaces": ["event", "store", "params", *s.namespaces]}
            for s in cat.triggers.values()
        ],
        "signals": [
            {"name": s.name, "zh": s.zh, "en": s.en, "namespaces": ["event", "store", "params", *s.namespaces]}
            for s in cat.signals.values()
        ],
    }


@router.get("/rules/facts", summary="Facts a rule may read / 规则可用的事实")
def list_facts(user: Annotated[User, require("rules:read")]) -> dict[str, Any]:
    """Every documented fact (`namespace.field`) with its type and Chinese and English names, and the namespaces
    each trigger kind and signal provides (a rule naming any other fact is refused at save)."""
    return _facts_catalogue()


@router.get("/rules/actions", summary="The action catalogue / 动作目录")
def list_actions(deps: Deps, user: Annotated[User, require("rules:read")]) -> dict[str, Any]:
    """The fixed actions (names, description, JSON Schema of their fields), the teams a notice or ticket may go to
    (the box's roles, the catalogue's teams and settings.rule_teams) and the return channels."""
    cat = actions()
    extra = [t for t in deps.settings.rule_teams if t not in cat.teams]
    return {
        "actions": [
            {
                "action": a.name,
                "zh": a.zh,
                "en": a.en,
                "doc": a.doc,
                "description": {"zh": a.doc_zh, "en": a.doc},
                "schema": a.schema,
            }
            for a in cat.actions.values()
        ],
        "teams": [{"name": k, "zh": v[0], "en": v[1]} for k, v in cat.teams.items()]
        + [{"name": t, "zh": t, "en": t} for t in extra],
        "roles": ["admin", "manager", "clerk", "purchaser", "accountant", "auditor"],
        "channels": [{"name": k, "zh": v[0], "en": v[1]} for k, v in cat.channels.items()],
    }


def _validate(conn: Any, document: Any, teams: tuple[str, ...]) -> dict[str, Any]:
    problems = store.problems_of(conn, document, teams)
    missing = (
        [
            {"code": "rule_not_ready", "message": zh, "message_en": en, "detail": {"field": field}}
            for field, zh, en in governance.readiness_problems(document)
        ]
        if isinstance(document, dict)
        else []
    )
    return {
        "ok": not problems,
        "problems": problems,
        "ready_for_review": not problems and not missing,
        "missing_for_review": missing,
    }


@router.post(
    "/rules/validate", response_model=ValidateOut, summary="Check a rule without saving it / 校验规则 (不保存)"
)
def validate(
    reader: Reader, deps: Deps, user: Annotated[User, require("rules:write")], document: Any = Body(None)
) -> Any:
    """The same checks as saving (syntax, facts, types, actions, loops with the box's other rules), answered as a
    list of problems; 200 whatever the body holds."""
    return _validate(reader, document, tuple(deps.settings.rule_teams))


# --- rules ----------------------------------------------------------------------------------------------


@router.get("/rules", response_model=list[RuleSummaryOut], summary="Rules / 业务规则")
def list_rules(
    reader: Reader,
    user: Annotated[User, require("rules:read")],
    state: Annotated[Literal["draft", "in_review", "active", "retired"] | None, Query()] = None,
    trigger_kind: Annotated[Literal["ledger", "bus", "alert", "schedule", "signal"] | None, Query()] = None,
    pack: Annotated[str | None, Query(pattern=RULE_ID)] = None,
    reviewer: Annotated[str | None, Query(max_length=64, description="waiting for this reviewer")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """Rules by id with their state, the version in force and the newest one, trigger, origin and whether the
    store switched them off."""
    return store.list_rules(
        reader, state=state, trigger_kind=trigger_kind, pack=pack, reviewer=reviewer, limit=limit, offset=offset
    )


@router.post(
    "/rules",
    status_code=201,
    response_model=RuleOut,
    responses=WRITE_RESPONSES,
    summary="Write a new rule (draft) / 新建规则 (草稿)",
)
async def create_rule(document: RuleDocument, deps: Deps, user: Annotated[User, require("rules:write")]) -> Any:
    """Saved as draft version 1 once it validates; 409 `rule_exists` when the id is taken."""
    return await deps.writer.execute(
        store.create_rule, document, user.username, deps.clock(), tuple(deps.settings.rule_teams)
    )


@router.get("/rules/{rule_id}", response_model=RuleOut, responses=error_responses(404), summary="One rule / 规则详情")
def get_rule(rule_id: RuleId, reader: Reader, user: Annotated[User, require("rules:read")]) -> Any:
    """The rule with every version (documents included), its review trail, override and lineage."""
    return store.get_rule(reader, rule_id)


@router.put("/rules/{rule_id}", response_model=RuleOut, responses=WRITE_RESPONSES, summary="Edit a rule / 修改规则")
async def update_rule(
    rule_id: RuleId, document: RuleDocument, deps: Deps, user: Annotated[User, require("rules:write")]
) -> Any:
    """A draft is rewritten; a reviewed version stays as it is and a new draft version is written (the active
    one keeps acting until the new one is approved). 409 while a version is under review or for a pack's rule."""
    return await deps.writer.execute(
        store.update_rule, rule_id, document, user.username, deps.clock(), tuple(deps.settings.rule_teams)
    )


@router.post(
    "/rules/{rule_id}/submit",
    response_model=RuleOut,
    responses=WRITE_RESPONSES,
    summary="Submit a rule for review / 提交审核",
)
async def submit(rule_id: RuleId, body: SubmitIn, deps: Deps, user: Annotated[User, require("rules:write")]) -> Any:
    """The newest draft goes to the named reviewer; it needs an owner and its impact (what, who, how_much)."""
    return await deps.writer.execute(governance.submit, rule_id, body.reviewer, user.username, deps.clock())


@router.post(
    "/rules/{rule_id}/approve",
    response_model=RuleOut,
    responses=WRITE_RESPONSES,
    summary="Approve a rule / 批准规则",
)
async def approve(
    rule_id: RuleId, deps: Deps, user: Annotated[User, require("rules:review")], body: ApproveIn | None = None
) -> Any:
    """Puts the version under review in force (the one it replaces is superseded); never by its author."""
    return await deps.writer.execute(
        governance.approve,
        rule_id,
        user.username,
        deps.clock(),
        body.note if body else None,
        tuple(deps.settings.rule_teams),
    )


@router.post(
    "/rules/{rule_id}/reject", response_model=RuleOut, responses=WRITE_RESPONSES, summary="Reject a rule / 驳回规则"
)
async def reject(rule_id: RuleId, body: ReasonIn, deps: Deps, user: Annotated[User, require("rules:review")]) -> Any:
    """Back to draft with the reason."""
    return await deps.writer.execute(governance.reject, rule_id, body.reason, user.username, deps.clock())


@router.post(
    "/rules/{rule_id}/retire", response_model=RuleOut, responses=WRITE_RESPONSES, summary="Retire a rule / 停用规则"
)
async def retire(
    rule_id: RuleId, deps: Deps, user: Annotated[User, require("rules:write")], body: RetireIn | None = None
) -> Any:
    """The rule stops acting; its active and pending versions are retired. A pack's rule is switched off with an
    override instead."""
    return await deps.writer.execute(
        governance.retire, rule_id, user.username, deps.clock(), body.reason if body else None
    )


class RestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1, le=MAX_ID, description="only this version's changes (default: all)")


class RestoreOut(BaseModel):
    rule_id: str
    version: int | None
    restored: list[dict[str, Any]] = Field(description="each change undone: sku, supplier, parameter, restored_to")
    kept: list[dict[str, Any]] = Field(description="rows changed since by someone else: their value stays")


@router.post(
    "/rules/{rule_id}/restore-parameters",
    response_model=RestoreOut,
    responses=WRITE_RESPONSES,
    summary="Undo a rule's planning-parameter changes / 撤销规则对计划参数的调整",
)
async def restore_parameters(
    rule_id: RuleId, deps: Deps, user: Annotated[User, require("rules:act")], body: RestoreIn | None = None
) -> Any:
    """Every planning-parameter change the rule (or one version of it) made and nobody has undone goes back to
    the value before it, newest first, in one transaction; a value changed since by someone else stays and is
    listed in `kept`. Audited."""
    from edge.rules.actions import restore_rule_parameters

    version = body.version if body else None
    return await deps.writer.execute(restore_rule_parameters, rule_id, user.username, deps.clock(), version)


@router.put(
    "/rules/{rule_id}/override",
    response_model=OverrideOut,
    responses=WRITE_RESPONSES,
    summary="Override a rule here / 本店覆盖设置",
)
async def set_override(
    rule_id: RuleId, body: OverrideIn, deps: Deps, user: Annotated[User, require("rules:write")]
) -> Any:
    """Switch a rule on or off in this store, or change its params (only those it declares); kept across pack
    upgrades and rollbacks."""
    return await deps.writer.execute(
        store.apply_override,
        rule_id,
        user.username,
        deps.clock(),
        body.enabled,
        body.params,
        body.clear,
        tuple(deps.settings.rule_teams),
    )


@router.post(
    "/rules/{rule_id}/dry-run",
    response_model=DryRunOut,
    responses=error_responses(404, 422),
    summary="What the rule would have done / 试运行",
)
async def dry_run(
    rule_id: RuleId, deps: Deps, user: Annotated[User, require("rules:read")], body: DryRunIn | None = None
) -> Any:
    """Replays the last `days` days of ledger events (and signals) through the rule (default: its newest version,
    with this store's override) and answers what it would have done: counts and the first firings. Nothing is
    written."""
    request = body or DryRunIn.model_validate({})
    return await run_in_threadpool(_dry_run_with, deps, rule_id, request.days, request.version)


def _dry_run_with(deps: Any, rule_id: str, days: int, version: int | None) -> dict[str, Any]:
    from edge.rules.dryrun import dry_run as replay
    from edge.rules.engine import load_rule_version
    from edge.rules.signals import SignalPolicy

    settings = deps.settings
    conn = deps.open_reader()
    try:
        rule = store.rule_row(conn, rule_id)
        chosen = version or int(rule["latest_version"])
        loaded = load_rule_version(conn, rule_id, chosen, tuple(settings.rule_teams))
        if loaded is None:
            raise store.UnknownRule(rule_id, chosen)
        result = replay(
            conn,
            loaded,
            days=days,
            now=deps.clock(),
            timezone=settings.timezone,
            store_id=settings.store_id,
            teams=tuple(settings.rule_teams),
            email_routes=dict(settings.rule_email_routes),
            policy=SignalPolicy.from_settings(settings),
        )
        answer: dict[str, Any] = result.to_json()
        return answer
    finally:
        conn.close()


@router.get(
    "/rules/{rule_id}/firings",
    response_model=list[FiringOut],
    responses=error_responses(404),
    summary="What a rule did / 规则触发记录",
)
def rule_firings(
    rule_id: RuleId,
    reader: Reader,
    user: Annotated[User, require("rules:read")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """The rule's firings newest first, each with its actions and the documents they acted on."""
    store.rule_row(reader, rule_id)
    return store.list_firings(reader, rule_id=rule_id, limit=limit, offset=offset)


@router.get("/rule-firings", response_model=list[FiringOut], summary="All rule firings / 全部规则触发记录")
def all_firings(
    reader: Reader,
    user: Annotated[User, require("rules:read")],
    rule_id: Annotated[str | None, Query(max_length=100)] = None,
    state: Annotated[Literal["fired", "done", "partial", "failed"] | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """Firings of every rule (and module) newest first; `state=failed` lists those that failed."""
    return store.list_firings(reader, rule_id=rule_id, state=state, limit=limit, offset=offset)


# --- holds and tickets --------------------------------------------------------------------------------


@router.get("/holds", response_model=list[HoldOut], summary="Documents held by rules / 规则暂挂的单据")
def list_rule_holds(
    reader: Reader,
    user: Annotated[User, require("rules:read")],
    state: Annotated[Literal["open", "released"] | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """Holds newest first: while open, finance refuses approving the held PO or accepting the held invoice."""
    return [h.to_json() for h in holds.list_holds(reader, state=state, limit=limit, offset=offset)]


@router.post(
    "/holds/{hold_id}/release",
    response_model=HoldOut,
    responses=WRITE_RESPONSES,
    summary="Release a hold / 解除暂挂",
)
async def release_rule_hold(
    hold_id: HoldId, body: NoteIn, deps: Deps, user: Annotated[User, require("rules:act")]
) -> Any:
    """Someone other than the held document's author releases it with a note; audited."""
    hold = await deps.writer.execute(holds.release_hold, hold_id, user.username, body.note, deps.clock())
    return hold.to_json()


@router.get("/rule-tickets", response_model=list[TicketOut], summary="Tickets rules opened / 规则工单")
def list_rule_tickets(
    reader: Reader,
    user: Annotated[User, require("rules:read")],
    state: Annotated[Literal["open", "closed"] | None, Query()] = None,
    queue: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """Tickets newest first, by state and queue (team)."""
    return store.list_tickets(reader, state=state, queue=queue, limit=limit, offset=offset)


@router.post(
    "/rule-tickets/{ticket_id}/close",
    response_model=TicketOut,
    responses=WRITE_RESPONSES,
    summary="Close a rule ticket / 关闭规则工单",
)
async def close_rule_ticket(
    ticket_id: TicketId, body: ResolutionIn, deps: Deps, user: Annotated[User, require("rules:act")]
) -> Any:
    """Closed with a resolution; audited with the rule's id and version."""
    return await deps.writer.execute(store.close_ticket, ticket_id, body.resolution, user.username, deps.clock())


@router.get("/rule-drafts", response_model=list[DraftOut], summary="Drafts rules proposed / 规则草稿")
def list_rule_drafts(
    reader: Reader,
    user: Annotated[User, require("rules:read")],
    state: Annotated[Literal["open", "confirmed", "dismissed"] | None, Query()] = None,
    kind: Annotated[Literal["purchase_order", "transfer_request", "presale", "markdown"] | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """Drafts (purchase orders, transfer requests, presales, markdowns) rules and modules proposed, newest first."""
    return drafts.list_drafts(reader, state=state, kind=kind, limit=limit, offset=offset)


@router.post(
    "/rule-drafts/{draft_id}/confirm",
    response_model=DraftOut,
    responses=error_responses(403, 404, 409, 422, 503),
    summary="Confirm a rule draft / 确认规则草稿",
)
async def confirm_rule_draft(
    draft_id: DraftId,
    deps: Deps,
    user: Annotated[User, require("rules:act")],
    body: Annotated[OptionalNoteIn | None, Body()] = None,
) -> Any:
    """A purchase order draft posts its PO (and needs `documents:write:purchase_order` too); the other kinds record
    the decision. A draft is decided once: a second confirm is refused (409 `rule_draft_invalid`)."""
    draft = await read(deps, drafts.get_draft, draft_id)
    if draft["kind"] == "purchase_order" and not has_permission(user.role, "documents:write:purchase_order"):
        raise PermissionDenied("documents:write:purchase_order", user.role)
    note = body.note if body is not None else None
    return await deps.writer.execute_posting(drafts.confirm_draft, draft_id, user.username, note)


@router.post(
    "/rule-drafts/{draft_id}/dismiss",
    response_model=DraftOut,
    responses=WRITE_RESPONSES,
    summary="Dismiss a rule draft / 驳回规则草稿",
)
async def dismiss_rule_draft(
    draft_id: DraftId,
    deps: Deps,
    user: Annotated[User, require("rules:act")],
    body: Annotated[OptionalNoteIn | None, Body()] = None,
) -> Any:
    """Dismissed with an optional note; audited with the rule's id and version."""
    note = body.note if body is not None else None
    return await deps.writer.execute(drafts.dismiss_draft, draft_id, user.username, deps.clock(), note)


@router.get("/rule-packs", response_model=list[PackOut], summary="Rule packs / 规则包")
def list_rule_packs(
    reader: Reader,
    user: Annotated[User, require("rules:read")],
    all_versions: Annotated[bool, Query(alias="all", description="every version this box held")] = False,
) -> Any:
    """The packs in force (HQ's signed packs and the built-in ones), their rules and the state they arrived in."""
    return packs.list_packs(reader, all_versions=all_versions)
