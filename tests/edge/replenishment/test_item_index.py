"""The item index: names, pinyin, initials, homophones, English, codes; built from a real database too."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.db import connect, migrate
from edge.ledger.masterdata import add_item, add_location, add_store
from edge.replenishment.item_index import IndexedItem, ItemIndex
from tests.edge.replenishment.emergency_support import demo_index


@pytest.mark.parametrize(
    ("query", "sku", "how"),
    [
        ("kkkl", "DR0001", "pinyin"),  # initials: the page's search box
        ("kekoukele tingzhuang", "DR0001", "pinyin"),
        ("可口可了听装", "DR0001", "pinyin"),  # a homophone typo
        ("wuhuarou", "FR0011", "pinyin"),
        ("光明鲜牛奶", "DA0001", "name"),
        ("Coca-Cola 330ml can", "DR0001", "english"),
        ("6917462068858", "DR0001", "barcode"),
        ("dr0001", "DR0001", "sku"),
    ],
)
def test_search_finds_the_item_first(query: str, sku: str, how: str) -> None:
    found = demo_index().search(query)
    assert found[0].sku == sku
    assert found[0].matched_by == how


def test_scores_rank_and_ambiguity_shows_as_ties() -> None:
    found = demo_index().search("水饺")
    assert len(found) >= 4
    assert found[0].score - found[1].score < 1  # several dumplings are as good: the caller must ask
    assert all(a.score >= b.score for a, b in itertools.pairwise(found))


def test_words_that_name_no_item_are_known_as_such() -> None:
    index = demo_index()
    assert index.knows_word("水饺") and index.knows_word("shuijiao") and index.knows_word("dumplings")
    assert index.knows_word("水交")  # sounds like 水饺
    assert not index.knows_word("帮忙") and not index.knows_word("斤")
    assert {"三全", "六个核桃", "三只松鼠"} <= index.numeral_words


def test_from_db_reads_active_items_stores_and_locations(tmp_path: Path) -> None:
    conn = connect(tmp_path / "box.db")
    migrate(conn)
    conn.execute("BEGIN")
    add_store(conn, "store-001", "本店", is_local=True)
    add_store(conn, "store-002", "中山路店 Zhongshan Road store")
    add_location(conn, "floor", "卖场", "sales floor", "floor", "ambient")
    add_item(conn, "COLA", "可乐 330ml", base_unit="听", units={"箱": 24}, barcodes={"6901234567892": "听"})
    add_item(conn, "OLD", "旧商品", base_unit="个")
    conn.execute("UPDATE items SET active = 0 WHERE sku = 'OLD'")
    conn.execute("COMMIT")
    before = ItemIndex.fingerprint(conn)
    index = ItemIndex.from_db(conn)
    assert set(index.items) == {"COLA"}
    assert dict(index.items["COLA"].units) == {"听": 1, "箱": 24}
    assert [s.code for s in index.stores] == ["store-002"]
    assert index.by_code("6901234567892") == "COLA"
    assert index.search("kl")[0].sku == "COLA"
    conn.execute("BEGIN")
    add_item(conn, "MILK", "牛奶", base_unit="盒")
    conn.execute("COMMIT")
    assert ItemIndex.fingerprint(conn) != before
    conn.close()


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_search_never_fails(query: str) -> None:
    for candidate in demo_index().search(query):
        assert 0 <= candidate.score <= 100


def test_an_empty_index_finds_nothing() -> None:
    index = ItemIndex([])
    assert index.search("可乐") == []
    index = ItemIndex([IndexedItem("A", "苹果", None, "个", "ambient")])
    assert index.search("pingguo")[0].sku == "A"
