"""Explanations of a suggestion in Chinese and English (建议说明), and the numbers behind it as JSON.

"未来7天预计销量 84，现有 30，在途 20，安全库存 18，建议订 3 箱" and then why: the forecast method, the calendar,
each outside signal, pack and minimum-order rounding, the shelf-life cap, expiring or blocked stock, a supplier
delay. Built only for the rows a run writes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from edge.forecast.calendar import date_range, day_facts, describe
from edge.replenishment.signals import SignalNote

METHOD_NAMES: dict[str, tuple[str, str]] = {
    "model": ("需求模型预测", "demand model"),
    "croston": ("间歇性需求 Croston 法", "intermittent demand, Croston"),
    "sba": ("间歇性需求 SBA 法", "intermittent demand, SBA (Syntetos–Boylan)"),
    "tsb": ("间歇性需求 TSB 法", "intermittent demand, TSB"),
    "ets": ("指数平滑 ETS", "exponential smoothing (ETS)"),
    "seasonal_naive": ("按上周同日", "same weekday last week (seasonal naive)"),
    "mean": ("历史日均销量", "mean daily sales"),
    "none": ("无销售历史", "no sales history"),
}


@dataclass(frozen=True, slots=True)
class ExplainFacts:
    """The numbers of one suggestion row."""

    sku: str
    location: str
    supplier: str
    unit: str
    base_unit: str
    pack: int
    moq: int
    qty: int  # purchase units
    order_by: date
    days_until_order: float
    protection_days: float  # lead time + review
    forecast_protection: float
    daily: list[float]
    on_hand: float
    in_transit: float
    on_order: float
    expiring: float
    blocked: float
    safety_stock: float
    reorder_point: float
    order_up_to: float
    position: float
    lead_time_days: float
    lead_time_std: float
    lead_time_learned: bool
    delay_days: float
    review_days: float
    service_level: float
    shelf_life_days: float
    shelf_capped: bool
    method: str
    intermittent: bool
    notes: Sequence[SignalNote]


@dataclass(frozen=True, slots=True)
class CalendarPhrases:
    """(zh, en) phrases of each day of the horizon, computed once per run."""

    days: list[list[tuple[str, str]]]

    def within(self, n_days: int) -> list[tuple[str, str]]:
        """Distinct phrases of the first n days: holidays and festival windows (one per festival)."""
        seen: set[str] = set()
        out: list[tuple[str, str]] = []
        for phrases in self.days[: max(n_days, 1)]:
            for zh, en in phrases:
                key = zh.split("前")[0].split("后")[0].split("当天")[0]
                if key in seen:
                    continue
                seen.add(key)
                out.append((zh, en))
        return out


def calendar_phrases(start: date, horizon: int) -> CalendarPhrases:
    days = date_range(start, max(horizon, 1))
    facts = day_facts(days)
    return CalendarPhrases([describe(facts, i) for i in range(len(days))])


def _n(value: float) -> str:
    """A quantity as people say it: whole numbers without decimals, else one decimal."""
    if not math.isfinite(value):
        return "—"
    rounded = round(value)
    return str(int(rounded)) if abs(value - rounded) < 0.05 else f"{value:.1f}"


def explain_row(facts: ExplainFacts, calendar: CalendarPhrases) -> tuple[str, str, dict[str, Any]]:
    """The Chinese and English explanation of a suggestion, and the numbers shown with it."""
    # The days said are the protection period itself (lead time + review, maybe fractional), so that the forecast
    # shown is the demand over exactly those days.
    days = max(1, math.ceil(facts.protection_days - 1e-9))
    said = _n(max(facts.protection_days, 0.0))
    u = facts.base_unit
    head_zh = [f"未来{said}天预计销量 {_n(facts.forecast_protection)}{u}", f"现有 {_n(facts.on_hand)}{u}"]
    head_en = [
        f"expected sales next {said} days {_n(facts.forecast_protection)} {u}",
        f"on hand {_n(facts.on_hand)} {u}",
    ]
    if facts.in_transit > 0:
        head_zh.append(f"在途 {_n(facts.in_transit)}{u}")
        head_en.append(f"in transit {_n(facts.in_transit)} {u}")
    if facts.on_order > 0:
        head_zh.append(f"已订未到 {_n(facts.on_order)}{u}")
        head_en.append(f"on order {_n(facts.on_order)} {u}")
    head_zh.append(f"安全库存 {_n(facts.safety_stock)}{u}")
    head_en.append(f"safety stock {_n(facts.safety_stock)} {u}")
    if facts.qty > 0:
        action_zh = f"建议订 {facts.qty} {facts.unit}"
        action_en = f"order {facts.qty} {facts.unit}"
    else:
        action_zh = "暂不建议订货"
        action_en = "do not order now"
    if facts.days_until_order > 0:
        action_zh = f"请于 {facts.order_by.isoformat()} 前下单，{action_zh}"
        action_en = f"order by {facts.order_by.isoformat()}: {action_en}"
    zh = "，".join(head_zh) + "，" + action_zh
    en = ", ".join(head_en) + ": " + action_en
    why_zh, why_en = _reasons(facts, calendar, days)
    if why_zh:
        zh += "。原因：" + "；".join(why_zh) + "。"
        en += ". Why: " + "; ".join(why_en) + "."
    else:
        zh += "。"
        en += "."
    return zh, en, _numbers(facts, days)


def _reasons(facts: ExplainFacts, calendar: CalendarPhrases, days: int) -> tuple[list[str], list[str]]:
    zh: list[str] = []
    en: list[str] = []
    method_zh, method_en = METHOD_NAMES.get(facts.method, (facts.method, facts.method))
    zh.append(f"预测方法：{method_zh}")
    en.append(f"forecast: {method_en}")
    phrases = calendar.within(days)
    if phrases:
        zh.append("日历：" + "、".join(p[0] for p in phrases))
        en.append("calendar: " + ", ".join(p[1] for p in phrases))
    for note in facts.notes:
        zh.append(note.message)
        en.append(note.message_en)
    if facts.delay_days > 0:
        if any(note.code == "supplier_delay" for note in facts.notes):  # the signal's note names the delay
            zh.append(f"到货周期按 {_n(facts.lead_time_days)} 天计")
            en.append(f"lead time taken as {_n(facts.lead_time_days)} days")
        else:
            zh.append(f"供应商延误，到货周期延长 {_n(facts.delay_days)} 天至 {_n(facts.lead_time_days)} 天")
            en.append(f"supplier delay: lead time up {_n(facts.delay_days)} days to {_n(facts.lead_time_days)} days")
    if facts.expiring > 0:
        zh.append(f"{_n(facts.expiring)}{facts.base_unit} 将在售完前过期，不计入可用库存")
        en.append(f"{_n(facts.expiring)} {facts.base_unit} will expire before they sell and are not counted")
    if facts.blocked > 0:
        zh.append(f"{_n(facts.blocked)}{facts.base_unit} 在冷库温度异常的批次中，暂不可用")
        en.append(f"{_n(facts.blocked)} {facts.base_unit} are in lots under a cold-room alarm and not usable")
    if facts.qty > 0:
        need = max(facts.order_up_to - facts.position, 0.0)
        exact = need / facts.pack if facts.pack else need
        if facts.shelf_capped:
            zh.append(f"保质期限制：最多订 {facts.qty} {facts.unit}")
            en.append(f"shelf life caps the order at {facts.qty} {facts.unit}")
        elif facts.moq > 0 and facts.qty == facts.moq and math.ceil(exact - 1e-9) < facts.moq:
            zh.append(f"按最小起订量 {facts.moq} {facts.unit} 取整")
            en.append(f"raised to the minimum order of {facts.moq} {facts.unit}")
        elif facts.pack > 1 and abs(exact - round(exact)) > 1e-6:
            zh.append(f"按整{facts.unit}取整 (每{facts.unit} {facts.pack}{facts.base_unit})")
            en.append(f"rounded up to whole {facts.unit} of {facts.pack} {facts.base_unit}")
    elif facts.shelf_capped:
        zh.append("保质期限制：到货后售不完，暂不订货")
        en.append("shelf life: an order would not sell before it expires")
    if not facts.lead_time_learned:
        zh.append(f"到货周期按默认 {_n(facts.lead_time_days - facts.delay_days)} 天")
        en.append(f"default lead time {_n(facts.lead_time_days - facts.delay_days)} days")
    return zh, en


def _numbers(facts: ExplainFacts, days: int) -> dict[str, Any]:
    """The numbers as JSON (the planner rounds them to 2 decimals beforehand)."""
    return {
        "forecast_protection": facts.forecast_protection,
        "protection_days": days,
        "daily_forecast": facts.daily,
        "on_hand": facts.on_hand,
        "in_transit": facts.in_transit,
        "on_order": facts.on_order,
        "expiring": facts.expiring,
        "blocked": facts.blocked,
        "safety_stock": facts.safety_stock,
        "reorder_point": facts.reorder_point,
        "order_up_to": facts.order_up_to,
        "position": facts.position,
        "lead_time_days": facts.lead_time_days,
        "lead_time_std": facts.lead_time_std,
        "lead_time_learned": facts.lead_time_learned,
        "delay_days": facts.delay_days,
        "review_days": facts.review_days,
        "service_level": facts.service_level,
        "pack": facts.pack,
        "moq": facts.moq,
        "shelf_life_days": facts.shelf_life_days,
        "shelf_capped": facts.shelf_capped,
        "days_until_order": facts.days_until_order,
        "method": facts.method,
        "intermittent": facts.intermittent,
        "signals": [
            {"code": n.code, "message": n.message, "message_en": n.message_en, "effect": n.effect} for n in facts.notes
        ],
    }
