"""An in-memory index of the item master (商品索引) for free-text look-ups.

Names, English names, SKUs and barcodes, the full pinyin and the pinyin initials of every name (pypinyin), a jieba
tokenizer whose user dictionary holds the item names, and rapidfuzz scoring. Used by the emergency-request parser
(edge/replenishment/emergency.py) and reusable by a search box: `index.search("kkkl")` finds
可口可乐.

Scoring, per item, 0..100: how much of the query the item's name covers, by characters (longest common
subsequence), by pinyin syllables (so homophone typos such as 可口可了 still match), by pinyin letters or initials
for Latin input ("kkkl", "shuijiao"), and by English words. A tie-break of up to 12 points prefers the item
whose name the query covers most, so "可口可乐听装" ranks the can above the bottles.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import jieba  # type: ignore[import-untyped]
from pypinyin import Style, lazy_pinyin
from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq

_HAN = re.compile(r"[\u3400-\u9fff]")
_HAN_RUN = re.compile(r"[\u3400-\u9fff]+")
_LATIN_WORD = re.compile(r"[a-z]+")
_SPEC = re.compile(r"\d+(?:\.\d+)?(?:ml|l|kg|g|层|抽|包|卷|瓶|枚|支|只|个|粒|片|度)", re.IGNORECASE)
_NUMERAL_CHARS = frozenset("零〇一二两三四五六七八九十百千万")
# What people say -> the word the item names use (a few everyday names; data, extend freely).
ALIASES: dict[str, str] = {
    "酸奶": "发酵乳",
    "鲜奶": "鲜牛奶",
    "饺子": "水饺",
    "方便面": "牛肉面",
    "泡面": "牛肉面",
    "矿泉水": "山泉",
    "纸巾": "抽纸",
    "卫生纸": "卷纸",
    "鸡蛋": "鲜鸡蛋",
    "五花肉": "猪五花肉",
}
# Private-use code points stand for pinyin syllables, so that syllable sequences compare as strings.
_SYLLABLE_BASE = 0xE000


@dataclass(frozen=True, slots=True)
class IndexedItem:
    """What the index knows of one item (商品)."""

    sku: str
    name: str
    name_en: str | None
    base_unit: str
    storage_class: str
    shelf_life_days: int | None = None
    units: tuple[tuple[str, int], ...] = ()  # unit -> factor in base units, the base unit included
    barcodes: tuple[str, ...] = ()
    cost_fen: int = 0

    def factor(self, unit: str) -> int | None:
        return dict(self.units).get(unit)


@dataclass(frozen=True, slots=True)
class Place:
    """A store (门店) or a location (库位) that free text may name."""

    code: str
    name: str
    name_en: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One item a query may mean, with its score (0..100) and how it matched."""

    sku: str
    name: str
    name_en: str | None
    score: float
    matched_by: str  # "barcode", "sku", "name", "pinyin", "english"

    def to_json(self) -> dict[str, object]:
        return {
            "sku": self.sku,
            "name": self.name,
            "name_en": self.name_en,
            "score": round(self.score, 1),
            "matched_by": self.matched_by,
        }


@dataclass(slots=True)
class _Entry:
    item: IndexedItem
    key: str  # the name normalised: lower case, no spaces, half-width
    han: str  # the Chinese characters of the name
    syllables: str  # one private-use character per pinyin syllable of `han`
    pinyin: str  # full pinyin letters of the name, digits and Latin kept ("kekoukele330mltingzhuang")
    initials: str  # initials, digits and Latin kept ("kkkl330mltz")
    english: tuple[str, ...]  # English words of name_en
    specs: frozenset[str] = field(default_factory=frozenset)  # "330ml", "1kg", "6包" ...


_JIEBA_LOCK = threading.Lock()
_JIEBA_MAIN: list[tuple[dict[str, int], int]] = []


def _jieba_main_dictionary() -> tuple[dict[str, int], int]:
    """jieba's main dictionary (prefix frequencies and their total), loaded once per process (~0.5 s) and copied into
    each index's own tokenizer (~30 ms), so an index rebuilt after a master-data change is cheap. A read-only cache
    of the library's data, not state of ours."""
    with _JIEBA_LOCK:
        if not _JIEBA_MAIN:
            # jieba logs its dictionary loading at DEBUG to stderr on its own handler: keep the box's log quiet.
            logging.getLogger("jieba").setLevel(logging.WARNING)
            base = jieba.Tokenizer()
            base.initialize()
            _JIEBA_MAIN.append((base.FREQ, base.total))
        return _JIEBA_MAIN[0]


def _overlap(word: str, name: str) -> float:
    """How much of `word` is in `name`: all of it when it appears as it is, else its characters in order (longest
    common subsequence) at 80 %: 红牛 is in 红牛维生素功能饮料, only scattered in 红烧牛肉面."""
    if word in name:
        return float(len(word))
    return 0.8 * LCSseq.similarity(word, name)


def normalise(text: str) -> str:
    """NFKC (full-width to half-width), lower case, the dashes and degree signs people type made one."""
    text = unicodedata.normalize("NFKC", text).lower()
    return text.replace("−", "-").replace("–", "-").replace("—", "-").replace("～", "~")


class ItemIndex:
    """The look-up structures over a list of items; build once, query many times (read-only afterwards)."""

    def __init__(
        self, items: Iterable[IndexedItem], stores: Sequence[Place] = (), locations: Sequence[Place] = ()
    ) -> None:
        self.items: dict[str, IndexedItem] = {}
        self.stores = tuple(stores)
        self.locations = tuple(locations)
        self._syllable_codes: dict[str, str] = {}
        self._entries: list[_Entry] = []
        self._by_code: dict[str, str] = {}
        self._words: set[str] = set()
        self.numeral_words: set[str] = set()  # name words holding a Chinese numeral (三全, 六个核桃): not quantities
        self.spec_tokens: set[str] = set()
        for item in items:
            self.items[item.sku] = item
            self._by_code[item.sku.lower()] = item.sku
            for code in item.barcodes:
                self._by_code[code] = item.sku
            self._entries.append(self._entry(item))
        self._tokenizer = jieba.Tokenizer()
        self._tokenizer_ready = False
        self._tokenizer_lock = threading.Lock()

    # --- building -------------------------------------------------------------------------------

    def _syllable_string(self, syllables: Iterable[str]) -> str:
        out = []
        for syllable in syllables:
            code = self._syllable_codes.get(syllable)
            if code is None:
                code = chr(_SYLLABLE_BASE + len(self._syllable_codes))
                self._syllable_codes[syllable] = code
            out.append(code)
        return "".join(out)

    def _entry(self, item: IndexedItem) -> _Entry:
        key = normalise(item.name).replace(" ", "")
        han = "".join(_HAN.findall(key))
        syllables = lazy_pinyin(han)
        pinyin_parts: list[str] = []
        initial_parts: list[str] = []
        for chunk in re.split(r"([\u3400-\u9fff]+)", key):
            if not chunk:
                continue
            if _HAN.match(chunk):
                pinyin_parts.extend(lazy_pinyin(chunk))
                initial_parts.extend(p[:1] for p in lazy_pinyin(chunk, style=Style.FIRST_LETTER))
            else:
                pinyin_parts.append(chunk)
                initial_parts.append(chunk)
        for run in _HAN_RUN.findall(key):
            self._words.add(run)
            for size in range(2, min(len(run), 4) + 1):
                for start in range(len(run) - size + 1):
                    word = run[start : start + size]
                    if any(c in _NUMERAL_CHARS for c in word) and start == 0:
                        self.numeral_words.add(word)
            if len(run) > 4 and any(c in _NUMERAL_CHARS for c in run[:4]):
                self.numeral_words.add(run)
        specs = frozenset(m.group(0).lower() for m in _SPEC.finditer(key))
        self.spec_tokens.update(specs)
        english = tuple(w for w in _LATIN_WORD.findall(normalise(item.name_en or "")) if len(w) > 1)
        return _Entry(
            item=item,
            key=key,
            han=han,
            syllables=self._syllable_string(syllables),
            pinyin="".join(pinyin_parts),
            initials="".join(initial_parts),
            english=english,
            specs=specs,
        )

    @classmethod
    def from_db(cls, conn: sqlite3.Connection) -> ItemIndex:
        """The index of the active items, the other stores and the locations of a box's database."""
        units: dict[str, list[tuple[str, int]]] = {}
        for sku, unit, factor in conn.execute("SELECT sku, unit, factor FROM item_units ORDER BY sku, factor"):
            units.setdefault(sku, []).append((unit, int(factor)))
        codes: dict[str, list[str]] = {}
        for code, sku in conn.execute("SELECT code, sku FROM barcodes ORDER BY code"):
            codes.setdefault(sku, []).append(code)
        items = []
        for row in conn.execute(
            "SELECT sku, name, name_en, base_unit, storage_class, shelf_life_days, cost_fen FROM items"
            " WHERE active = 1 ORDER BY sku"
        ):
            sku = row[0]
            item_units = [(row[3], 1), *[(u, f) for u, f in units.get(sku, []) if u != row[3]]]
            items.append(
                IndexedItem(
                    sku=sku,
                    name=row[1],
                    name_en=row[2],
                    base_unit=row[3],
                    storage_class=row[4],
                    shelf_life_days=row[5],
                    units=tuple(item_units),
                    barcodes=tuple(codes.get(sku, [])),
                    cost_fen=int(row[6]),
                )
            )
        stores = [Place(r[0], r[1]) for r in conn.execute("SELECT id, name FROM stores WHERE is_local = 0 ORDER BY id")]
        locations = [Place(r[0], r[1], r[2]) for r in conn.execute("SELECT code, name, name_en FROM locations")]
        return cls(items, stores, locations)

    @staticmethod
    def fingerprint(conn: sqlite3.Connection) -> str:
        """A digest of the master data an index holds, to know when to rebuild it (one pass over small tables)."""
        digest = hashlib.blake2b(digest_size=16)
        for query in (
            "SELECT sku, name, name_en, base_unit, storage_class, shelf_life_days, cost_fen, active FROM items",
            "SELECT sku, unit, factor FROM item_units",
            "SELECT code, sku FROM barcodes",
            "SELECT id, name, is_local FROM stores",
            "SELECT code, name, name_en FROM locations",
        ):
            for row in conn.execute(query + " ORDER BY 1, 2"):
                digest.update(repr(tuple(row)).encode())
            digest.update(b"|")
        return digest.hexdigest()

    # --- words ----------------------------------------------------------------------------------

    def cut(self, text: str) -> list[str]:
        """jieba's words of `text`, with the item names as a user dictionary (loaded on first use)."""
        if not self._tokenizer_ready:
            with self._tokenizer_lock:  # the web answers from several threads
                if not self._tokenizer_ready:
                    freq, total = _jieba_main_dictionary()
                    self._tokenizer.FREQ, self._tokenizer.total = dict(freq), total
                    self._tokenizer.initialized = True
                    for word in self._words:
                        self._tokenizer.add_word(word, freq=max(1000, 200 * len(word)))
                    self._tokenizer_ready = True
        return [w for w in self._tokenizer.lcut(text) if w.strip()]

    def knows_word(self, word: str) -> bool:
        """Whether `word` (Chinese, or a Latin word) says something about some item: a part of a name, a
        homophone of one, a pinyin or initials fragment, an English word of a name."""
        if _HAN.search(word):
            han = "".join(_HAN.findall(word))
            if han in ALIASES or any(han in e.han for e in self._entries):
                return True
            if len(han) < 2:
                return False  # one character by sound alone is too loose (斤 sounds like 金)
            syllables = [self._syllable_codes.get(s) for s in lazy_pinyin(han)]
            if any(s is None for s in syllables):
                return False
            joined = "".join(s for s in syllables if s is not None)
            return any(joined in e.syllables for e in self._entries)
        if len(word) < 2:
            return False
        for e in self._entries:
            if word in e.pinyin or word in e.initials or word in e.key:
                return True
            if any(fuzz.ratio(word, w) >= 80 for w in e.english):
                return True
        return False

    def by_code(self, code: str) -> str | None:
        """The SKU of an SKU or barcode, exactly."""
        return self._by_code.get(code.lower()) or self._by_code.get(code)

    # --- scoring --------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 10) -> list[Candidate]:
        """Items ranked by how well `query` names them (best first), at most `limit`, none scoring below 40."""
        text = normalise(query).strip()
        if not text:
            return []
        sku = self.by_code(text.replace(" ", ""))
        if sku is not None:
            item = self.items[sku]
            kind = "sku" if sku.lower() == text.replace(" ", "") else "barcode"
            return [Candidate(sku, item.name, item.name_en, 100.0, kind)]
        words = [w for w in self.cut(text) if w.strip()]
        return self.rank(words, limit=limit)

    def rank(self, words: Sequence[str], *, limit: int = 10, floor: float = 40.0) -> list[Candidate]:
        """Score every item against the query words (Chinese runs, Latin words, specs such as 330ml)."""
        # Each Chinese word scores on its own, so the order of words does not matter (思念水饺玉米 = 思念猪肉玉米水饺).
        han_words = [h for h in ("".join(_HAN.findall(w)) for w in words) if h]
        han = "".join(han_words)
        specs = [w for w in words if _SPEC.fullmatch(w)]
        latin = [w for w in words if not _HAN.search(w) and not _SPEC.fullmatch(w) and re.fullmatch(r"[a-z]+", w)]
        if not han and not specs and not latin:
            return []
        han_aliases = [ALIASES.get(h, "") for h in han_words]  # 酸奶 also finds 发酵乳, and still 裸酸奶
        word_syllables = [self._query_syllables(h) for h in han_words]
        weight_han, weight_latin, weight_spec = len(han), 2.0 * len(latin), 1.5 * len(specs)
        total = weight_han + weight_latin + weight_spec
        joined_latin = "".join(latin)
        scored: list[Candidate] = []
        for e in self._entries:
            parts = 0.0
            how = "name"
            covered = 0.0
            if han:
                chars = sum(
                    max(_overlap(h, e.han), _overlap(alias, e.han) * len(h) / len(alias))
                    if alias
                    else _overlap(h, e.han)
                    for h, alias in zip(han_words, han_aliases, strict=True)
                )
                sound = sum(_overlap(s, e.syllables) for s in word_syllables)
                by_chars, by_sound = chars / len(han), sound / len(han)
                if by_sound * 0.92 > by_chars:
                    how = "pinyin"
                parts += weight_han * max(by_chars, 0.92 * by_sound)
                covered = min(1.0, max(chars, sound) / len(e.han)) if e.han else 0.0
            if latin:
                latin_score, latin_how = self._latin_score(e, latin, joined_latin)
                parts += weight_latin * latin_score
                if not han:
                    how = latin_how
            if specs:
                parts += weight_spec * sum(1.0 for s in specs if s in e.specs or s in e.key) / len(specs)
            score = 100.0 * parts / total
            if score < floor:
                continue
            # Tie-break (at most 12 points): the share of the name the query covers.
            score -= 12.0 * (1.0 - covered) if han else 0.0
            scored.append(Candidate(e.item.sku, e.item.name, e.item.name_en, max(score, 0.0), how))
        scored.sort(key=lambda c: (-c.score, c.sku))
        return scored[:limit]

    def _query_syllables(self, han: str) -> str:
        if not han:
            return ""
        out = []
        for syllable in lazy_pinyin(han):
            code = self._syllable_codes.get(syllable)
            out.append(code if code is not None else "\x00")
        return "".join(out)

    @staticmethod
    def _latin_score(e: _Entry, latin: Sequence[str], joined: str) -> tuple[float, str]:
        if len(joined) >= 2 and (joined in e.initials or joined in e.pinyin):
            return 1.0, "pinyin"
        total = 0.0
        how = "english"
        for word in latin:
            best = 0.0
            if len(word) >= 2 and (word in e.pinyin or word in e.initials):
                best, how = 1.0, "pinyin"
            elif e.english:
                best = max(fuzz.ratio(word, w) for w in e.english) / 100.0
                best = best if best >= 0.75 else 0.0
            total += best
        return total / len(latin), how
