"""Recipe loss for a prepared-food counter (熟食档损耗): dishes sold explode through their bill of materials into the
ingredients they used; a stock count's shortfall beyond that use, and beyond a tolerance, is loss to look into.

Ingredients are not taken out of stock dish by dish: their count (盘点) brings the book down to what is left, so a
count's difference is the ingredients used plus what was lost. For each ingredient counted, the module takes the
dishes that left the counter since the ingredient's previous count (sold, less returns, plus dishes written off:
made and thrown away), multiplies them by `recipes.csv` (dish_sku, ingredient_sku, qty_base_units per dish) and
calls the rest of the shortfall a *shortfall* when it is above `tolerance_share` of that use plus
`count_tolerance_share` of the quantity counted (portioning and counting are not exact).

At that one count a shortfall cannot be told from a count that missed a container: both are stock the count did not
find. The difference shows at the next count: missed stock is found again there (a gain beyond the recipes), lost
stock is not. So with `confirm_next_count` (the default) a shortfall only asks the manager to recount (a notice, no
decision), and the loss is decided at the ingredient's next count: the shortfall less what that count found again,
when that is still beyond the short count's tolerance (beyond both counts' tolerances when the next count found
more than its own tolerance: the rest is then the difference of two counts). Then a ticket opens and the manager is
notified. The decision is judged at the count after that one: right unless `reappear_share` of the confirmed loss
turned up again after all (net, over the counts since the short one).

A plain Python module run by the module host's worker (docs/modules.md): it reads the box database through
`ctx.db` (read-only) and imports nothing of the box.
"""

import csv
import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

MODULE = "recipe-loss"
RECIPES_FILE = Path(__file__).resolve().parent / "recipes.csv"
DEFAULTS: dict[str, Any] = {
    "tolerance_share": 0.06,  # of the ingredient's theoretical use in the period
    "count_tolerance_share": 0.02,  # of the quantity counted
    "min_loss_units": 0,  # never flag less than this many base units
    "reappear_share": 0.5,  # judged wrong when this share of the loss shows up again by the judging count
    "confirm_next_count": True,  # decide at the next count (a shortfall found again was a miscount), not at once
    "recount_notice": True,  # with confirm_next_count: at the short count, ask `role` to recount (no decision)
    "recount_days": 7,  # ask the judge from this many days after the decision (it waits for the next count anyway)
    "scan_days": 3,  # on a schedule tick: counts posted in the last days not yet looked at
    "queue": "quality",
    "role": "manager",
    "recipes": None,  # optional [[dish_sku, ingredient_sku, qty], ...] instead of recipes.csv
}
# Documents after which dishes are gone from the counter (made and used): sales less returns, write-offs, gifts.
DISH_OUT_TYPES = ("sale", "customer_return", "write_off", "gift_out")


class Ctx:
    """What the worker's ModuleContext provides (for type hints only)."""

    db: sqlite3.Connection
    today: date
    store_id: str
    params: Mapping[str, Any]

    def log(self, msg: object) -> None: ...


@dataclass(frozen=True, slots=True)
class CountCheck:
    """One ingredient at one count: its use since the previous count and what is left unexplained."""

    sku: str
    name: str
    document_id: int
    doc_no: str
    business_date: str
    previous_id: int
    counted: int
    difference: int  # counted minus book (negative: short)
    use: float  # theoretical use from the dishes
    loss: float  # -difference - use (negative: more found than the dishes explain)
    tolerance: float
    value_fen: int  # of the shortfall, at book cost

    @property
    def flagged(self) -> bool:
        return self.loss > self.tolerance


def params_of(ctx: Ctx) -> dict[str, Any]:
    return {**DEFAULTS, **dict(ctx.params or {})}


def load_recipes(rows: Iterable[Any] | None = None) -> dict[str, dict[str, float]]:
    """Bill of materials: ingredient SKU -> {dish SKU: base units per dish}. From `rows` when given (the param),
    else recipes.csv next to this file. Refuses a malformed row with the row number."""
    if rows is None:
        with RECIPES_FILE.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"dish_sku", "ingredient_sku", "qty_base_units"} <= set(
                reader.fieldnames
            ):
                raise ValueError("recipes.csv needs the columns dish_sku, ingredient_sku, qty_base_units")
            rows = [(r["dish_sku"], r["ingredient_sku"], r["qty_base_units"]) for r in reader]
    bom: dict[str, dict[str, float]] = {}
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, list | tuple) or len(row) != 3:
            raise ValueError(f"recipe row {n}: expected dish_sku, ingredient_sku, qty_base_units")
        dish, ingredient, qty_text = (str(v).strip() for v in row)
        try:
            qty = float(qty_text)
        except ValueError:
            raise ValueError(f"recipe row {n}: quantity {qty_text!r} is not a number") from None
        if not dish or not ingredient or not qty > 0 or qty > 1e7:
            raise ValueError(f"recipe row {n}: needs a dish, an ingredient and a quantity above 0")
        if dish == ingredient:
            raise ValueError(f"recipe row {n}: a dish cannot be its own ingredient")
        uses = bom.setdefault(ingredient, {})
        uses[dish] = uses.get(dish, 0.0) + qty
    return bom


# --- handle ------------------------------------------------------------------------------------------------------


def handle(ctx: Ctx, event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A count line posted (ledger:stocktake): check that ingredient at that count. A schedule tick: check every
    ingredient line of the counts of the last `scan_days` days (a count posted while the module was off).

    With `confirm_next_count`, checking an ingredient at count C decides on the shortfall of its previous count F
    (loss when C did not find it again) and, on the ledger event only, asks for a recount of a shortfall at C."""
    p = params_of(ctx)
    bom = load_recipes(p["recipes"])
    facts = event.get("facts") or {}
    targets: list[tuple[int, str]] = []
    live = str(event.get("kind", "")).split(":")[0] == "ledger"  # {"kind": "ledger", "name": "stocktake", ...}
    if live:
        doc, line = facts.get("document") or {}, facts.get("line") or {}
        if doc.get("type", "stocktake") == "stocktake" and line.get("sku") in bom and doc.get("id") is not None:
            targets.append((int(doc["id"]), str(line["sku"])))
    else:
        since = (ctx.today - timedelta(days=int(p["scan_days"]))).isoformat()
        rows = ctx.db.execute(
            "SELECT DISTINCT d.id, dl.sku FROM documents d JOIN document_lines dl ON dl.document_id = d.id"
            " WHERE d.type = 'stocktake' AND d.business_date >= ? AND dl.sku IN (SELECT value FROM json_each(?))"
            " ORDER BY d.id",
            (since, json.dumps(sorted(bom))),
        ).fetchall()
        targets.extend((int(r[0]), str(r[1])) for r in rows)
    proposals: list[dict[str, Any]] = []
    for document_id, sku in targets:
        if not truthy(p["confirm_next_count"]):  # decide at the short count itself
            key = f"count:{document_id}:{sku}"
            check = None if already_decided(ctx.db, key) else check_count(ctx.db, document_id, sku, bom[sku], p)
            if check is not None and check.flagged:
                proposals.extend(propose(ctx, check, key, p))
            continue
        current = check_count(ctx.db, document_id, sku, bom[sku], p)
        if current is None:
            continue
        key = f"count:{current.previous_id}:{sku}"
        if not already_decided(ctx.db, key):
            short = check_count(ctx.db, current.previous_id, sku, bom[sku], p)
            held = None if short is None else confirmed_loss(short, current)
            if short is not None and held is not None:
                proposals.extend(propose(ctx, short, key, p, confirmed_by=current, held=held))
        if live and truthy(p["recount_notice"]) and current.flagged:
            proposals.append(recount_notice(current, p))
    return proposals


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"))


def confirmed_loss(short: CountCheck, following: CountCheck) -> float | None:
    """What of the shortfall at count `short` the next count `following` did not find again, when it is still loss
    beyond the tolerance; else None. The next count's gain beyond the recipes is stock the short count missed and
    comes off the shortfall (a further shortfall at the next count is that count's own). When that gain is beyond
    the next count's own tolerance (a miscount, not noise), what is left is the difference of two counts, each with
    its error: it must then be beyond both tolerances."""
    if not short.flagged:
        return None
    found = max(-following.loss, 0.0)
    held = short.loss - found
    needed = short.tolerance + (following.tolerance if found > following.tolerance else 0.0)
    return held if held > needed else None


def check_count(
    conn: sqlite3.Connection, document_id: int, sku: str, dishes: Mapping[str, float], p: Mapping[str, Any]
) -> CountCheck | None:
    """The ingredient `sku` at count `document_id` against its previous count; None when it has none (the first
    count only sets the book) or the count was reversed."""
    doc = conn.execute(
        "SELECT d.id, d.doc_no, d.business_date, d.type FROM documents d WHERE d.id = ? AND d.type = 'stocktake'"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (document_id,),
    ).fetchone()
    if doc is None:
        return None
    counted = conn.execute(
        "SELECT SUM(qty_base) FROM document_lines WHERE document_id = ? AND sku = ?", (document_id, sku)
    ).fetchone()[0]
    if counted is None:
        return None
    previous = neighbour_count(conn, document_id, sku, before=True)
    if previous is None:
        return None
    moved = conn.execute(
        "SELECT COALESCE(SUM(qty), 0), COALESCE(SUM(value_fen), 0) FROM stock_moves WHERE document_id = ? AND sku = ?",
        (document_id, sku),
    ).fetchone()
    use = theoretical_use(conn, int(previous), document_id, dishes)
    difference = int(moved[0])
    loss = -difference - use
    tolerance = (
        float(p["tolerance_share"]) * use
        + float(p["count_tolerance_share"]) * int(counted)
        + float(p["min_loss_units"])
    )
    name = conn.execute("SELECT name FROM items WHERE sku = ?", (sku,)).fetchone()
    unit_value = abs(int(moved[1])) / abs(difference) if difference else 0.0
    return CountCheck(
        sku=sku,
        name=str(name[0]) if name else sku,
        document_id=document_id,
        doc_no=str(doc["doc_no"]),
        business_date=str(doc["business_date"]),
        previous_id=int(previous),
        counted=int(counted),
        difference=difference,
        use=use,
        loss=loss,
        tolerance=tolerance,
        value_fen=round(max(loss, 0.0) * unit_value),
    )


def neighbour_count(conn: sqlite3.Connection, document_id: int, sku: str, *, before: bool) -> int | None:
    """The ingredient's count (not reversed) just before, or just after, document `document_id`."""
    query = (
        "SELECT MAX(d.id) FROM documents d JOIN document_lines dl ON dl.document_id = d.id WHERE d.id < ?"
        if before
        else "SELECT MIN(d.id) FROM documents d JOIN document_lines dl ON dl.document_id = d.id WHERE d.id > ?"
    )
    row = conn.execute(
        query + " AND d.type = 'stocktake' AND dl.sku = ?"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (document_id, sku),
    ).fetchone()
    return None if row[0] is None else int(row[0])


def theoretical_use(conn: sqlite3.Connection, after_id: int, up_to_id: int, dishes: Mapping[str, float]) -> float:
    """Base units of the ingredient the dishes that left the counter in documents (after_id, up_to_id] used: each
    dish sold, given or written off, less each returned; a reversed one did not happen."""
    if not dishes:
        return 0.0
    types = json.dumps(list(DISH_OUT_TYPES))
    rows = conn.execute(
        "SELECT m.sku, -SUM(m.qty) FROM stock_moves m JOIN documents d ON d.id = m.document_id"
        " LEFT JOIN documents o ON o.id = d.reverses_id"
        " WHERE m.document_id > ? AND m.document_id <= ? AND m.sku IN (SELECT value FROM json_each(?))"
        " AND (d.type IN (SELECT value FROM json_each(?)) OR (d.type = 'reversal' AND o.type IN"
        " (SELECT value FROM json_each(?))))"
        " GROUP BY m.sku",
        (after_id, up_to_id, json.dumps(sorted(dishes)), types, types),
    ).fetchall()
    return float(sum(dishes[str(r[0])] * int(r[1]) for r in rows))


def already_decided(conn: sqlite3.Connection, key: str) -> bool:
    try:
        row = conn.execute("SELECT 1 FROM module_decisions WHERE module = ? AND key = ? LIMIT 1", (MODULE, key))
        return row.fetchone() is not None
    except sqlite3.OperationalError:  # a database without the module host's tables (a bare test DB)
        return False


def propose(
    ctx: Ctx,
    check: CountCheck,
    key: str,
    p: Mapping[str, Any],
    confirmed_by: CountCheck | None = None,
    held: float | None = None,
) -> list[dict[str, Any]]:
    """A ticket for the counter's loss at count `check` (carrying the decision) and a notice to the manager; `held`:
    what of it the next count `confirmed_by` did not find again."""
    lost = check.loss if held is None else held
    loss = round(lost)
    share = lost / check.use if check.use > 0 else 1.0
    yuan = check.value_fen * (lost / check.loss if check.loss > 0 else 0.0) / 100
    zh_confirmed = f", 盘点 {confirmed_by.doc_no} 未找回" if confirmed_by is not None else ""
    en_confirmed = f", not found again at count {confirmed_by.doc_no}" if confirmed_by is not None else ""
    predicted: dict[str, Any] = {
        "outcome": "loss",
        "sku": check.sku,
        "document_id": check.document_id,
        "loss": round(lost, 1),
        "shortfall": round(check.loss, 1),
        "use": round(check.use, 1),
        "tolerance": round(check.tolerance, 1),
        "decided_on": ctx.today.isoformat(),
    }
    if confirmed_by is not None:
        predicted["confirmed_by"] = confirmed_by.document_id
    ticket: dict[str, Any] = {
        "action": "open_ticket",
        "queue": str(p["queue"]),
        "subject": check.sku,
        "title": {
            "zh": f"熟食档损耗: {check.name} 盘点 {check.doc_no} 短少 {loss}"
            f" (超出配方用量 {share:.0%}, 约 {yuan:.2f} 元{zh_confirmed})",
            "en": f"counter loss: {check.sku} at count {check.doc_no} is {loss} short beyond recipe use"
            f" ({share:.0%} of it, about {yuan:.2f} yuan{en_confirmed})",
        },
        "decision": {
            "key": key,
            "subject": check.sku,
            "predicted": predicted,
            "check_on": (ctx.today + timedelta(days=int(p["recount_days"]))).isoformat(),
        },
    }
    notice = {
        "action": "notify",
        "role": str(p["role"]),
        "message": {
            "zh": f"熟食档 {check.name} 盘点 {check.doc_no} 短少 {-check.difference}, 按配方应用 {round(check.use)},"
            f" 多出损耗 {loss} (容差 {round(check.tolerance)}{zh_confirmed}); 请查找原因",
            "en": f"counter: {check.sku} at count {check.doc_no} {-check.difference} short, recipes explain"
            f" {round(check.use)};"
            f" {loss} lost beyond a tolerance of {round(check.tolerance)}{en_confirmed}: look into it",
        },
    }
    return [ticket, notice]


def recount_notice(check: CountCheck, p: Mapping[str, Any]) -> dict[str, Any]:
    """A shortfall not decided yet: the manager is asked to recount (a missed container is found now, not at the
    next count); the next count decides whether it is loss."""
    short = round(check.loss)
    return {
        "action": "notify",
        "role": str(p["role"]),
        "message": {
            "zh": f"熟食档 {check.name} 盘点 {check.doc_no} 短少超出配方 {short} (容差 {round(check.tolerance)});"
            " 请复盘是否漏点; 下次盘点仍未找回将开损耗工单",
            "en": f"counter: {check.sku} at count {check.doc_no} is {short} short beyond the recipes (tolerance"
            f" {round(check.tolerance)}): recount it; a loss ticket opens if the next count does not find it",
        },
    }


# --- judge -------------------------------------------------------------------------------------------------------


def predicted_of(decision: Mapping[str, Any]) -> dict[str, Any]:
    value = decision.get("predicted")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def judge(ctx: Ctx, decision: Mapping[str, Any]) -> bool | None:
    """At the ingredient's first count after the decision (after the count that confirmed it, or after the short
    count for a decision taken at once): True when the loss held, False when at least `reappear_share` of it turned
    up again (the net gain beyond the recipes over the counts since the short one, counted against the shortfall:
    the short count missed stock that was there); None until that count is posted."""
    p = params_of(ctx)
    predicted = predicted_of(decision)
    sku, document_id, loss = predicted.get("sku"), predicted.get("document_id"), predicted.get("loss")
    if not sku or document_id is None or loss is None:
        return None
    sku, short_id, loss = str(sku), int(document_id), float(loss)
    shortfall = float(predicted.get("shortfall", loss))
    confirmed_by = predicted.get("confirmed_by")
    last = neighbour_count(ctx.db, int(confirmed_by) if confirmed_by is not None else short_id, sku, before=False)
    if last is None:
        return None
    dishes = load_recipes(p["recipes"]).get(sku, {})
    net = 0.0  # loss beyond the recipes over the counts after the short one, up to `last`
    following = neighbour_count(ctx.db, short_id, sku, before=False)
    while following is not None and following <= last:
        check = check_count(ctx.db, following, sku, dishes, p)
        if check is None:
            return None
        net += check.loss
        following = neighbour_count(ctx.db, following, sku, before=False)
    came_back = max(shortfall - loss, 0.0)  # found again at the confirming count, already left out of `loss`
    reappeared = max(-net, 0.0) - came_back
    return reappeared < float(p["reappear_share"]) * loss
