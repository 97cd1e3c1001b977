"""How the page writes amounts, quantities, weights and times: pure functions, used as Jinja filters."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo


def fen(value: int | None, *, sign: bool = False) -> str:
    """Fen as yuan with a thousands separator: 123456 -> "¥1,234.56", -5 -> "-¥0.05"; None -> "—"."""
    if value is None:
        return "—"
    whole, cents = divmod(abs(int(value)), 100)
    prefix = "-" if value < 0 else ("+" if sign and value > 0 else "")
    return f"{prefix}¥{whole:,}.{cents:02d}"


def qty(value: int | float | None, unit: str | None = None) -> str:
    """A quantity with its unit: 12 -> "12", (12, "瓶") -> "12 瓶"; thousands separated."""
    if value is None:
        return "—"
    if unit == "g" and isinstance(value, int) and abs(value) >= 1000:
        return grams(value)  # weighed goods are kept in grams and read in kilograms
    number = f"{value:,}" if isinstance(value, int) else f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{number} {unit}" if unit else number


def grams(value: int | None) -> str:
    """Grams as kilograms for weighed goods: 1234 -> "1.234 kg"."""
    if value is None:
        return "—"
    return f"{value / 1000:,.3f} kg"


def percent(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: 0.1234 -> "12.3%"."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"


def local_time(value: str | datetime | None, tz: ZoneInfo, *, seconds: bool = False) -> str:
    """An ISO timestamp (UTC or with offset) in the store's time zone: "2026-12-06 09:30"."""
    if value is None or value == "":
        return "—"
    moment = value if isinstance(value, datetime) else _parse(value)
    if moment is None:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def day(value: str | date | None) -> str:
    """A business date as YYYY-MM-DD."""
    if value is None or value == "":
        return "—"
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


def _parse(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
