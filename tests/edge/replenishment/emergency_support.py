"""The demo catalog as an item index, shared by the emergency tests (building it costs a jieba load)."""

from __future__ import annotations

from functools import cache

from edge.demo.catalog import build_catalog
from edge.replenishment.item_index import IndexedItem, ItemIndex, Place


@cache
def demo_index() -> ItemIndex:
    catalog = build_catalog()
    items = [
        IndexedItem(
            sku=i.sku,
            name=i.name,
            name_en=i.name_en,
            base_unit=i.base_unit,
            storage_class=i.storage_class,
            shelf_life_days=i.shelf_life_days,
            units=i.units,
            barcodes=tuple(code for code, _ in i.barcodes),
            cost_fen=i.cost_fen,
        )
        for i in catalog.items
    ]
    stores = [Place(s.id, s.name) for s in catalog.neighbour_stores]
    locations = [Place(loc.code, loc.name, loc.name_en) for loc in catalog.locations]
    return ItemIndex(items, stores, locations)
