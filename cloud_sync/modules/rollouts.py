"""Module rollouts (灰度发布): HQ marks one version of a scenario module for pilot stores, watches the KPIs the
pilots report, and promotes it to every store only when each pilot's KPIs hold; a rollout is rolled back by HQ or
automatically by a report that breaks a threshold (cloud_sync.modules.kpis). Every change is an event.

States: piloting -> promoted | rolled_back; promoted -> rolled_back. A rolled-back version is never rolled out
again (the boxes do not install a version they rolled back either): publish a higher version.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import yaml

from cloud_sync.errors import CloudError
from cloud_sync.modules.tables import module_kpis, module_rollout_events, module_rollout_stores, module_rollouts
from cloud_sync.packages.format import NAME, PackageError, read_package
from cloud_sync.packages.tables import packages
from cloud_sync.tables import stores, sync_state

MODULE_KIND = "module"
MANIFEST_FILE = "manifest.yaml"
PILOTING, PROMOTED, ROLLED_BACK = "piloting", "promoted", "rolled_back"
STATES = (PILOTING, PROMOTED, ROLLED_BACK)
DEFAULT_PILOTS = 3
MAX_PILOTS = 100
MAX_WINDOW = 100_000
BP = 10_000  # basis points in one
STORE_ID = re.compile(r"^[a-z0-9-]{1,64}$")


class RolloutError(CloudError):
    """A refused rollout request: stable code, Chinese and English message, HTTP status, detail."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What the pilots' KPIs must hold: precision >= precision_min and false positives <= false_positive_max over
    at least min_decisions judged decisions (of the last `window`, as the box measures them)."""

    precision_min_bp: int = 9200
    false_positive_max_bp: int = 500
    window: int = 200
    min_decisions: int = 50
    source: str = "default"  # default, manifest or request: where the last of them came from

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision_min": self.precision_min_bp / BP,
            "false_positive_max": self.false_positive_max_bp / BP,
            "window": self.window,
            "min_decisions": self.min_decisions,
            "from": self.source,
        }


def _bad_threshold(field: str, zh: str, en: str, code: str = "rollout_thresholds_invalid") -> RolloutError:
    where = f"{MANIFEST_FILE} kpis." if code == "rollout_manifest_invalid" else ""
    return RolloutError(
        code, f"KPI 阈值 {where}{field} 无效: {zh}", f"invalid KPI threshold {where}{field}: {en}", 422, field=field
    )


def _ratio_bp(field: str, value: Any, code: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad_threshold(field, "应为 0 到 1 之间的数", "must be a number from 0 to 1", code)
    if not 0 <= value <= 1:
        raise _bad_threshold(field, "应在 0 到 1 之间", "must be from 0 to 1", code)
    bp = round(value * BP)
    if abs(bp - value * BP) > 1e-6:
        raise _bad_threshold(field, "最多四位小数 (0.0001)", "at most four decimals (0.0001)", code)
    return bp


def _count(field: str, value: Any, code: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise _bad_threshold(field, f"应为 1 到 {high} 的整数", f"must be an integer from 1 to {high}", code)
    return value


def apply_thresholds(
    base: Thresholds, doc: Mapping[str, Any], source: str, *, code: str = "rollout_thresholds_invalid"
) -> Thresholds:
    """`base` with the thresholds `doc` names (precision_min, false_positive_max, window, min_decisions; other
    keys are ignored: a manifest's `kpis` may say more). Refused with `code` when a value is out of range."""
    changed = base
    if doc.get("precision_min") is not None:
        changed = replace(changed, precision_min_bp=_ratio_bp("precision_min", doc["precision_min"], code))
    if doc.get("false_positive_max") is not None:
        changed = replace(
            changed, false_positive_max_bp=_ratio_bp("false_positive_max", doc["false_positive_max"], code)
        )
    if doc.get("window") is not None:
        changed = replace(changed, window=_count("window", doc["window"], code, MAX_WINDOW))
    if doc.get("min_decisions") is not None:
        changed = replace(changed, min_decisions=_count("min_decisions", doc["min_decisions"], code, MAX_WINDOW))
    if changed.min_decisions > changed.window:
        raise _bad_threshold(
            "min_decisions",
            f"不能大于 window ({changed.window})",
            f"must not be more than window ({changed.window})",
            code,
        )
    given = any(doc.get(k) is not None for k in ("precision_min", "false_positive_max", "window", "min_decisions"))
    return replace(changed, source=source) if given else changed


def manifest_thresholds(files: Mapping[str, bytes]) -> Thresholds:
    """The defaults overridden by the module manifest's `kpis` (manifest.yaml at the package root)."""
    raw = files.get(MANIFEST_FILE)
    if raw is None:
        raise RolloutError(
            "rollout_manifest_invalid",
            f"模块包里没有 {MANIFEST_FILE}",
            f"the module package has no {MANIFEST_FILE}",
            422,
        )
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
        raise RolloutError(
            "rollout_manifest_invalid",
            f"{MANIFEST_FILE} 不是有效的 UTF-8 YAML",
            f"{MANIFEST_FILE} is not valid UTF-8 YAML",
            422,
        ) from None
    kpis = doc.get("kpis") if isinstance(doc, dict) else None
    if kpis is None:
        return Thresholds()
    if not isinstance(kpis, dict):
        raise RolloutError(
            "rollout_manifest_invalid",
            f"{MANIFEST_FILE} 的 kpis 应为映射",
            f"{MANIFEST_FILE}: kpis must be a mapping",
            422,
        )
    return apply_thresholds(Thresholds(), kpis, "manifest", code="rollout_manifest_invalid")


# --- the gate: does a store's report hold the thresholds? ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kpis:
    """A store's latest report for one module version."""

    store: str
    judged: int
    right: int
    wrong: int
    precision: float | None
    false_positive_rate: float | None
    window: int
    at: str | None
    received_at: str | None


def _reason(code: str, zh: str, en: str, **detail: Any) -> dict[str, Any]:
    return {"code": code, "message": zh, "message_en": en, **detail}


def kpi_reasons(kpis: Kpis | None, t: Thresholds) -> list[dict[str, Any]]:
    """Why a store's KPIs do not allow promotion (empty: they hold). Ratios are compared on the integer counts:
    precision = right / judged, false-positive rate = wrong / judged."""
    if kpis is None:
        return [_reason("kpis_missing", "门店尚未上报该版本的 KPI", "the store has not reported KPIs for this version")]
    reasons = []
    if kpis.judged < t.min_decisions:
        reasons.append(
            _reason(
                "too_few_decisions",
                f"已判定 {kpis.judged} 次，少于 {t.min_decisions} 次",
                f"{kpis.judged} judged decisions, fewer than {t.min_decisions}",
                judged=kpis.judged,
                min_decisions=t.min_decisions,
            )
        )
    reasons.extend(broken_thresholds(kpis, t))
    return reasons


def broken_thresholds(kpis: Kpis, t: Thresholds) -> list[dict[str, Any]]:
    """The thresholds a report breaks (none before any decision was judged)."""
    reasons: list[dict[str, Any]] = []
    if kpis.judged == 0:
        return reasons
    precision, false_positives = kpis.right / kpis.judged, kpis.wrong / kpis.judged
    if kpis.right * BP < t.precision_min_bp * kpis.judged:
        reasons.append(
            _reason(
                "precision_low",
                f"精确率 {precision:.2%} 低于 {t.precision_min_bp / BP:.2%}",
                f"precision {precision:.2%} is below {t.precision_min_bp / BP:.2%}",
                precision=round(precision, 4),
                precision_min=t.precision_min_bp / BP,
            )
        )
    if kpis.wrong * BP > t.false_positive_max_bp * kpis.judged:
        reasons.append(
            _reason(
                "false_positives_high",
                f"误报率 {false_positives:.2%} 高于 {t.false_positive_max_bp / BP:.2%}",
                f"false-positive rate {false_positives:.2%} is above {t.false_positive_max_bp / BP:.2%}",
                false_positive_rate=round(false_positives, 4),
                false_positive_max=t.false_positive_max_bp / BP,
            )
        )
    return reasons


def breaks(kpis: Kpis, t: Thresholds) -> list[dict[str, Any]]:
    """The thresholds a report breaks with enough decisions to be sure: these roll a rollout back."""
    return broken_thresholds(kpis, t) if kpis.judged >= t.min_decisions else []


# --- reads ------------------------------------------------------------------------------------------------------


def thresholds_of(row: Any) -> Thresholds:
    return Thresholds(
        int(row.precision_min_bp),
        int(row.false_positive_max_bp),
        int(row.window_size),
        int(row.min_decisions),
        str(row.thresholds_from),
    )


def pilots_of(conn: sa.Connection, rollout_id: int) -> list[str]:
    rows = conn.execute(
        sa.select(module_rollout_stores.c.store)
        .where(module_rollout_stores.c.rollout_id == rollout_id)
        .order_by(module_rollout_stores.c.store)
    )
    return [str(r.store) for r in rows]


def kpis_of(conn: sa.Connection, name: str, version: int, store_ids: Sequence[str] | None = None) -> dict[str, Kpis]:
    query = sa.select(module_kpis).where(module_kpis.c.name == name, module_kpis.c.version == version)
    if store_ids is not None:
        query = query.where(module_kpis.c.store.in_(list(store_ids)))
    return {str(r.store): kpis_row(r) for r in conn.execute(query)}


def kpis_row(r: Any) -> Kpis:
    return Kpis(
        str(r.store),
        int(r.judged),
        int(r.right_count),
        int(r.wrong_count),
        None if r.precision_rate is None else float(r.precision_rate),
        None if r.false_positive_rate is None else float(r.false_positive_rate),
        int(r.window_size),
        r.box_at,
        r.received_at,
    )


def _summary(row: Any, pilots: list[str]) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "name": row.name,
        "version": int(row.version),
        "package_id": int(row.package_id),
        "state": row.state,
        "stores": pilots,
        "thresholds": thresholds_of(row).to_dict(),
        "created_at": row.created_at,
        "created_by": row.created_by,
        "promoted_at": row.promoted_at,
        "promoted_by": row.promoted_by,
        "rolled_back_at": row.rolled_back_at,
        "rolled_back_by": row.rolled_back_by,
        "reason": row.reason,
    }


def _rollout_row(conn: sa.Connection, rollout_id: int) -> Any:
    row = conn.execute(sa.select(module_rollouts).where(module_rollouts.c.id == rollout_id)).first()
    if row is None:
        raise RolloutError(
            "rollout_not_found", f"没有灰度发布 {rollout_id}", f"no rollout {rollout_id}", 404, id=rollout_id
        )
    return row


def store_verdicts(conn: sa.Connection, row: Any, pilots: list[str]) -> list[dict[str, Any]]:
    """Per pilot store: its latest report for the rollout's version and why it does not (yet) allow promotion."""
    t = thresholds_of(row)
    reported = kpis_of(conn, row.name, int(row.version), pilots)
    out = []
    for store in pilots:
        k = reported.get(store)
        reasons = kpi_reasons(k, t)
        out.append(
            {
                "store": store,
                "reported": k is not None,
                "judged": k.judged if k else 0,
                "right": k.right if k else 0,
                "wrong": k.wrong if k else 0,
                "precision": k.precision if k else None,
                "false_positive_rate": k.false_positive_rate if k else None,
                "window": k.window if k else None,
                "at": k.at if k else None,
                "received_at": k.received_at if k else None,
                "ok": not reasons,
                "reasons": reasons,
            }
        )
    return out


def events_of(conn: sa.Connection, rollout_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(module_rollout_events)
        .where(module_rollout_events.c.rollout_id == rollout_id)
        .order_by(module_rollout_events.c.id)
    )
    return [
        {
            "at": r.at,
            "action": r.action,
            "actor": r.actor,
            "reason": r.reason,
            "detail": json.loads(r.detail),
        }
        for r in rows
    ]


def get_rollout(conn: sa.Connection, rollout_id: int) -> dict[str, Any]:
    """A rollout with its pilot stores' KPIs, whether it may be promoted, and its events."""
    row = _rollout_row(conn, rollout_id)
    pilots = pilots_of(conn, rollout_id)
    verdicts = store_verdicts(conn, row, pilots)
    return {
        **_summary(row, pilots),
        "kpis": verdicts,
        "promotable": row.state == PILOTING and all(v["ok"] for v in verdicts),
        "events": events_of(conn, rollout_id),
    }


def list_rollouts(
    conn: sa.Connection, *, name: str | None = None, state: str | None = None, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    """Rollouts, newest first, paged like the HQ API's lists."""
    where = []
    if name is not None:
        where.append(module_rollouts.c.name == name)
    if state is not None:
        where.append(module_rollouts.c.state == state)
    total = int(conn.execute(sa.select(sa.func.count()).select_from(module_rollouts).where(*where)).scalar_one())
    rows = conn.execute(
        sa.select(module_rollouts).where(*where).order_by(module_rollouts.c.id.desc()).limit(limit).offset(offset)
    ).all()
    items = [_summary(r, pilots_of(conn, int(r.id))) for r in rows]
    following = offset + len(items)
    return {
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": following if following < total else None,
    }


def list_kpis(
    conn: sa.Connection, *, name: str | None = None, store: str | None = None, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    """Every store's latest report per module version, ordered by module, version, store."""
    where = []
    if name is not None:
        where.append(module_kpis.c.name == name)
    if store is not None:
        where.append(module_kpis.c.store == store)
    total = int(conn.execute(sa.select(sa.func.count()).select_from(module_kpis).where(*where)).scalar_one())
    rows = conn.execute(
        sa.select(module_kpis)
        .where(*where)
        .order_by(module_kpis.c.name, module_kpis.c.version, module_kpis.c.store)
        .limit(limit)
        .offset(offset)
    ).all()
    items = [
        {
            "store": r.store,
            "module": r.name,
            "version": int(r.version),
            "judged": int(r.judged),
            "right": int(r.right_count),
            "wrong": int(r.wrong_count),
            "precision": r.precision_rate,
            "false_positive_rate": r.false_positive_rate,
            "window": int(r.window_size),
            "at": r.box_at,
            "received_at": r.received_at,
            "reports": int(r.reports),
        }
        for r in rows
    ]
    following = offset + len(items)
    return {
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": following if following < total else None,
    }


# --- changes ------------------------------------------------------------------------------------------------------


def record_event(
    conn: sa.Connection,
    rollout_id: int,
    now: datetime,
    action: str,
    actor: str,
    reason: str | None = None,
    **detail: Any,
) -> None:
    conn.execute(
        module_rollout_events.insert().values(
            rollout_id=rollout_id,
            at=now.isoformat(),
            action=action,
            actor=actor[:100],
            reason=reason,
            detail=json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str),
        )
    )


def _module_package(conn: sa.Connection, name: str, version: int) -> Any:
    row = conn.execute(
        sa.select(packages.c.id, packages.c.stores, packages.c.content).where(
            packages.c.kind == MODULE_KIND,
            packages.c.name == name,
            packages.c.version == version,
            packages.c.withdrawn_at.is_(None),
        )
    ).first()
    if row is None:
        raise RolloutError(
            "rollout_package_unknown",
            f"没有已发布的模块包 {name} 版本 {version}",
            f"no published module package {name} version {version}",
            404,
            name=name,
            version=version,
        )
    return row


def _targets(package_stores: Sequence[str], store: str) -> bool:
    return "*" in package_stores or store in package_stores


def default_pilots(conn: sa.Connection, package_stores: Sequence[str], count: int = DEFAULT_PILOTS) -> list[str]:
    """The `count` stores heard from most recently (last batch or heartbeat) among those the package names and
    that are not disabled; ties by store id. Stores never heard from are not chosen: they would never report."""
    rows = conn.execute(
        sa.select(stores.c.id, sync_state.c.last_contact_at)
        .join(sync_state, sync_state.c.store == stores.c.id)
        .where(stores.c.disabled_at.is_(None), sync_state.c.last_contact_at.is_not(None))
        .order_by(sync_state.c.last_contact_at.desc(), stores.c.id)
    ).all()
    return sorted([str(r.id) for r in rows if _targets(package_stores, str(r.id))][:count])


def _check_pilots(conn: sa.Connection, wanted: Sequence[str], package_stores: Sequence[str]) -> list[str]:
    if not 1 <= len(wanted) <= MAX_PILOTS or len(set(wanted)) != len(wanted):
        raise RolloutError(
            "rollout_stores_invalid",
            f"试点门店应为 1 到 {MAX_PILOTS} 个不重复的门店",
            f"pilot stores must be 1 to {MAX_PILOTS} distinct stores",
            422,
            field="stores",
        )
    for store in wanted:
        if not isinstance(store, str) or not STORE_ID.match(store):
            raise RolloutError(
                "rollout_stores_invalid",
                f"门店编号无效: {str(store)[:64]!r}",
                f"invalid store id: {str(store)[:64]!r}",
                422,
                field="stores",
            )
    known = {
        str(r.id): r.disabled_at
        for r in conn.execute(sa.select(stores.c.id, stores.c.disabled_at).where(stores.c.id.in_(list(wanted))))
    }
    for store in wanted:
        if store not in known:
            raise RolloutError("rollout_store_unknown", f"没有门店 {store}", f"no store {store}", 422, store=store)
        if known[store] is not None:
            raise RolloutError(
                "rollout_store_disabled", f"门店 {store} 已停用", f"store {store} is disabled", 422, store=store
            )
        if not _targets(package_stores, store):
            raise RolloutError(
                "rollout_store_not_targeted",
                f"模块包没有发给门店 {store} (清单的 stores)",
                f"the module package is not for store {store} (its manifest's stores)",
                422,
                store=store,
                package_stores=list(package_stores),
            )
    return sorted(wanted)


def create_rollout(
    engine: sa.Engine,
    name: str,
    version: int,
    *,
    pilot_stores: Sequence[str] | None,
    thresholds: Mapping[str, Any] | None,
    now: datetime,
    by: str,
) -> dict[str, Any]:
    """Mark module `name` version `version` (a published `module` package) for pilot stores. Thresholds: the
    defaults, then the manifest's `kpis`, then `thresholds`."""
    if not isinstance(name, str) or not NAME.match(name):
        raise RolloutError("rollout_invalid", "模块名无效", "invalid module name", 422, field="name")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 2**53 - 1:
        raise RolloutError(
            "rollout_invalid", "版本应为正整数", "version must be a positive integer", 422, field="version"
        )
    with engine.begin() as conn:
        package = _module_package(conn, name, version)
        package_stores = json.loads(package.stores)
        try:
            files = read_package(bytes(package.content), None, verify=False).files  # type: ignore[arg-type]
        except PackageError as err:  # published packages were read once already: only a damaged row gets here
            raise RolloutError("rollout_manifest_invalid", err.message, err.message_en, 422) from None
        t = manifest_thresholds(files)
        if thresholds:
            t = apply_thresholds(t, thresholds, "request")
        existing = conn.execute(
            sa.select(module_rollouts.c.id, module_rollouts.c.version, module_rollouts.c.state).where(
                module_rollouts.c.name == name
            )
        ).all()
        for r in existing:
            if int(r.version) == version:
                raise RolloutError(
                    "rollout_exists",
                    f"{name} 版本 {version} 已有灰度发布 {r.id} ({r.state})",
                    f"{name} version {version} already has rollout {r.id} ({r.state})",
                    409,
                    id=int(r.id),
                    state=r.state,
                )
            if r.state == PILOTING:
                raise RolloutError(
                    "rollout_in_progress",
                    f"{name} 正在试点版本 {r.version} (灰度发布 {r.id})：先推广或回滚它",
                    f"{name} version {r.version} is piloting (rollout {r.id}): promote or roll it back first",
                    409,
                    id=int(r.id),
                    version=int(r.version),
                )
        newest = max((int(r.version) for r in existing), default=0)
        if version < newest:  # a box never installs a version below one it had: roll out a higher one
            raise RolloutError(
                "rollout_version_not_newer",
                f"{name} 版本 {version} 不比已灰度发布过的版本 {newest} 新",
                f"{name} version {version} is not newer than version {newest}, rolled out before",
                409,
                newest=newest,
            )
        if pilot_stores is None:
            pilots = default_pilots(conn, package_stores)
            if not pilots:
                raise RolloutError(
                    "rollout_no_stores",
                    "没有可作试点的门店 (已同步过、未停用、在包的 stores 中)",
                    "no store can pilot (one that has synced, is not disabled and is among the package's stores)",
                    422,
                )
        else:
            pilots = _check_pilots(conn, list(pilot_stores), package_stores)
        try:
            rollout_id = int(
                conn.execute(
                    module_rollouts.insert()
                    .values(
                        name=name,
                        version=version,
                        package_id=int(package.id),
                        state=PILOTING,
                        piloting_name=name,
                        precision_min_bp=t.precision_min_bp,
                        false_positive_max_bp=t.false_positive_max_bp,
                        window_size=t.window,
                        min_decisions=t.min_decisions,
                        thresholds_from=t.source,
                        created_at=now.isoformat(),
                        created_by=by[:100],
                    )
                    .returning(module_rollouts.c.id)
                ).scalar_one()
            )
        except sa.exc.IntegrityError:  # another replica created one for this module at the same moment
            raise RolloutError(
                "rollout_in_progress",
                f"{name} 已有进行中的灰度发布",
                f"{name} already has a rollout in progress",
                409,
            ) from None
        conn.execute(module_rollout_stores.insert(), [{"rollout_id": rollout_id, "store": s} for s in pilots])
        record_event(conn, rollout_id, now, "created", by, stores=pilots, thresholds=t.to_dict())
        return get_rollout(conn, rollout_id)


def promote(engine: sa.Engine, rollout_id: int, *, now: datetime, by: str) -> dict[str, Any]:
    """Offer the version to every store its package names, if every pilot's KPIs hold; else 409
    `rollout_kpis_not_met` with each store's reasons (and the refusal is an event)."""
    with engine.begin() as conn:
        row = _rollout_row(conn, rollout_id)
        if row.state != PILOTING:
            raise _not_in_state(row, "promote")
        pilots = pilots_of(conn, rollout_id)
        failing = [
            {"store": v["store"], "reasons": v["reasons"]} for v in store_verdicts(conn, row, pilots) if not v["ok"]
        ]
        if not failing:
            done = conn.execute(
                module_rollouts.update()
                .where(module_rollouts.c.id == rollout_id, module_rollouts.c.state == PILOTING)
                .values(state=PROMOTED, piloting_name=None, promoted_at=now.isoformat(), promoted_by=by[:100])
            )
            if done.rowcount != 1:  # rolled back by a report in the meantime
                raise _not_in_state(_rollout_row(conn, rollout_id), "promote")
            record_event(conn, rollout_id, now, "promoted", by)
            return get_rollout(conn, rollout_id)
    with engine.begin() as conn:
        record_event(conn, rollout_id, now, "promotion_refused", by, stores=failing)
    names = ", ".join(f["store"] for f in failing)
    raise RolloutError(
        "rollout_kpis_not_met",
        f"试点门店的 KPI 未达标，不能推广: {names}",
        f"the pilot stores' KPIs do not hold, not promoted: {names}",
        409,
        stores=failing,
    )


def _not_in_state(row: Any, what: str) -> RolloutError:
    zh = {"promote": "只有试点中的灰度发布可以推广", "rollback": "只有试点中或已推广的灰度发布可以回滚"}[what]
    en = {
        "promote": "only a piloting rollout can be promoted",
        "rollback": "only a piloting or promoted rollout can be rolled back",
    }[what]
    return RolloutError(
        "rollout_not_active",
        f"{zh} (灰度发布 {row.id} 为 {row.state})",
        f"{en} (rollout {row.id} is {row.state})",
        409,
        id=int(row.id),
        state=row.state,
    )


def roll_back(
    conn: sa.Connection, row: Any, *, now: datetime, by: str, reason: str, reason_en: str, **detail: Any
) -> bool:
    """Mark a piloting or promoted rollout rolled back (in the caller's transaction); False when it no longer was."""
    text = f"{reason} / {reason_en}" if reason_en and reason_en != reason else reason
    done = conn.execute(
        module_rollouts.update()
        .where(module_rollouts.c.id == row.id, module_rollouts.c.state.in_((PILOTING, PROMOTED)))
        .values(
            state=ROLLED_BACK,
            piloting_name=None,
            rolled_back_at=now.isoformat(),
            rolled_back_by=by[:100],
            reason=text[:2000],
        )
    )
    if done.rowcount != 1:
        return False
    record_event(conn, int(row.id), now, "rolled_back", by, text[:2000], was=row.state, **detail)
    return True


def rollback(engine: sa.Engine, rollout_id: int, *, now: datetime, by: str, reason: str | None) -> dict[str, Any]:
    """HQ rolls a rollout back: its version is no longer served, and the stores that may have it are told to roll
    back at their next pull (the `rollbacks` of GET /api/v1/sync/packages)."""
    with engine.begin() as conn:
        row = _rollout_row(conn, rollout_id)
        given = (reason or "").strip()[:1000]
        zh = given or "总部手动回滚"
        en = given or "rolled back by HQ"
        if not roll_back(conn, row, now=now, by=by, reason=zh, reason_en=en):
            raise _not_in_state(_rollout_row(conn, rollout_id), "rollback")
        return get_rollout(conn, rollout_id)
